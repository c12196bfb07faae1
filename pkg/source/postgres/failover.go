package postgres

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// Failover slots and promotion (PostgreSQL 17).
//
// On a PG17 primary the slot is made a failover slot: created with FAILOVER,
// or switched on with ALTER_REPLICATION_SLOT when it exists without it.
// Standbys with sync_replication_slots = on then keep a synchronized copy of
// it, and with the standby's physical slot listed in the primary's
// synchronized_standby_slots, the primary sends cdcd no change the standby
// has not received: after a promotion the new primary's copy of the slot
// never lags behind what cdcd was sent.
//
// After a promotion cdcd reconnects through a multi-host source.dsn
// (target_session_attrs=read-write picks the new primary). The trail is
// only continued from the same system (capture checks the identifier), and
// Stream.Start checks that the trail holds nothing past the point where the
// new primary's timeline forked from the one cdcd was reading (remembered
// in memory and in Config.StateDir's source.timeline, so across a restart
// too): such
// transactions exist only on the dead primary, and continuing would mix two
// histories. Re-sent transactions at or below the trail's position are
// dropped by capture (rule 5).

// Failover reports whether the slot should be a failover slot:
// Config.Failover is not "off", the server is PostgreSQL 17+ and a primary
// (a standby's slots cannot be failover slots).
func (s *Source) Failover() bool {
	return s.cfg.Failover != "off" && s.ServerVersion >= 170000 && !s.Standby
}

// createSlotCommand is CREATE_REPLICATION_SLOT for a pgoutput slot without
// a snapshot: with FAILOVER in the option list syntax of PostgreSQL 15+
// when failover is set, else in the older syntax every version takes.
func createSlotCommand(slot string, failover bool) string {
	cmd := "CREATE_REPLICATION_SLOT " + pgx.Identifier{slot}.Sanitize() + " LOGICAL pgoutput "
	if failover {
		return cmd + "(SNAPSHOT 'nothing', FAILOVER)"
	}
	return cmd + "NOEXPORT_SNAPSHOT"
}

// enableFailover switches FAILOVER on for an existing slot.
func (s *Source) enableFailover(ctx context.Context) error {
	cmd := "ALTER_REPLICATION_SLOT " + pgx.Identifier{s.cfg.Slot}.Sanitize() + " (FAILOVER true)"
	if _, err := s.repl.Exec(ctx, cmd).ReadAll(); err != nil {
		return classify(fmt.Errorf("turn on failover for slot %s (ALTER_REPLICATION_SLOT): %w; set source.failover: off to leave it", s.cfg.Slot, err))
	}
	s.log.Info("replication slot is now a failover slot", "slot", s.cfg.Slot)
	return nil
}

// forkPoint returns the LSN at which timeline from ended on the way to the
// server's current timeline, read from TIMELINE_HISTORY; ok is false when
// the history does not name it.
func (s *Source) forkPoint(ctx context.Context, from int32) (lsn change.LSN, ok bool, err error) {
	h, err := pglogrepl.TimelineHistory(ctx, s.repl, s.Timeline)
	if err != nil {
		return 0, false, classify(fmt.Errorf("read timeline history %d: %w", s.Timeline, err))
	}
	return parseForkPoint(h.Content, from)
}

// parseForkPoint reads a timeline history file ("tli<TAB>switchpoint<TAB>
// reason" per line) for the switchpoint where timeline from ended.
func parseForkPoint(history []byte, from int32) (change.LSN, bool, error) {
	sc := bufio.NewScanner(bytes.NewReader(history))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return 0, false, fmt.Errorf("timeline history line %q: want timeline and switchpoint", line)
		}
		tli, err := strconv.ParseInt(f[0], 10, 32)
		if err != nil {
			return 0, false, fmt.Errorf("timeline history line %q: %w", line, err)
		}
		if int32(tli) != from {
			continue
		}
		lsn, err := change.ParseLSN(f[1])
		if err != nil {
			return 0, false, fmt.Errorf("timeline history line %q: %w", line, err)
		}
		return lsn, true, nil
	}
	return 0, false, sc.Err()
}

// checkFork stops a session on a new timeline when the trail holds changes
// past the point where that timeline forked from prev, the timeline the
// previous session read.
func (st *Stream) checkFork(ctx context.Context, held change.LSN) error {
	prev := st.lastTimeline.Load()
	if prev == 0 && st.timelineFile != nil && held != 0 {
		// A restart: the timeline the trail was written from, if recorded.
		tli, ok, err := st.timelineFile.Load()
		if err != nil {
			return Terminal(fmt.Errorf("read the source's timeline: %w", err))
		}
		if ok {
			prev = int32(tli)
		}
	}
	cur := st.src.Timeline
	if prev == 0 || prev == cur {
		return nil
	}
	fork, ok, err := st.src.forkPoint(ctx, prev)
	if err != nil {
		return err
	}
	if !ok {
		return Terminal(fmt.Errorf("source is now on timeline %d, whose history does not contain timeline %d that cdcd was reading: it is not a promoted standby of the old primary; point source.dsn back or re-synchronise the target",
			cur, prev))
	}
	if held > fork {
		return Terminal(fmt.Errorf("source was promoted: timeline %d forked from timeline %d at %s, but the trail holds changes up to %s that the new primary never received; re-synchronise the target from the new primary (set synchronized_standby_slots on the primary to prevent this)",
			cur, prev, fork, held))
	}
	st.log.Info("source promoted: continuing on the new timeline", "timeline", cur, "previous_timeline", prev, "fork_lsn", fork.String(), "trail_end", held.String())
	return nil
}

// recordTimeline remembers the timeline this session reads, in memory and,
// once it changes, in Config.StateDir before anything from it reaches the
// trail.
func (st *Stream) recordTimeline() error {
	prev := st.lastTimeline.Swap(st.src.Timeline)
	if st.timelineFile == nil || prev == st.src.Timeline {
		return nil
	}
	if tli, ok, err := st.timelineFile.Load(); err == nil && ok && int32(tli) == st.src.Timeline {
		return nil
	}
	if err := st.timelineFile.Store(uint64(st.src.Timeline)); err != nil {
		return Terminal(fmt.Errorf("record the source's timeline: %w", err))
	}
	return nil
}
