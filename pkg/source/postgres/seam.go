package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/checkpoint"
	"github.com/cdcd-io/cdcd/pkg/decode"
	"github.com/cdcd-io/cdcd/pkg/source"
)

// Stream is the pgoutput source behind the capture seam: one session's
// replication stream, decoded into events, with heartbeats. It keeps the
// acknowledgement rules of DESIGN.md that belong to the stream:
//
//   - rule 3: Ack reports the keepalive's WAL end as adoptable when capture
//     is idle (capture stores it before acknowledging it);
//   - rule 4: Start refuses a slot whose confirmed_flush_lsn is past what
//     the trail holds (source.ErrAhead);
//   - rule 6: receiving and status updates happen on the caller's one
//     goroutine. A Change event borrows (decode.NewBorrowing): its values
//     alias the received message until the next Next, which capture never
//     calls before the change is in the trail's buffer.
type Stream struct {
	src *Source
	dec *decode.Decoder
	log *slog.Logger

	serverWALEnd  change.LSN // the latest keepalive's WAL end
	acked         change.LSN // the last flush position sent
	replyDue      bool       // the server asked for a status update
	sawData       bool       // XLogData since the last heartbeat
	sent          int64      // the server's send time of the message being decoded (Message.ServerClock)
	nextHeartbeat time.Time
	heartbeatOff  bool
	stopInterrupt func() bool

	// Streamed transactions (protocol 2): their segments wait in the spool
	// until their Stream Commit; replay then hands one out as an ordinary
	// transaction, an event per Next.
	spool     *spool
	streamXID uint32 // the open stream block's transaction
	// rows counts the changes of the open (not streamed) transaction:
	// from bulkRows on, the socket reader may take the stream in gulps.
	rows   int
	replay *replay
	// fwd is the streamed transaction being forwarded before its commit
	// (forward.go); nil when none.
	fwd *forward
	// queued is an event to hand out at the next call, before anything
	// else (what a Withdraw had to precede).
	queued *source.Event
	// No transaction is forwarded before forwardAfter; forwardPause is the
	// current pause (pauseForwarding).
	forwardAfter time.Time
	forwardPause time.Duration

	// lastTimeline is shared by the sessions of one opener: the timeline
	// the previous session read, to notice a promotion (failover.go).
	lastTimeline *atomic.Int32
	// timelineFile keeps lastTimeline across restarts; nil without
	// Config.StateDir.
	timelineFile *checkpoint.File
}

// replay is a committed streamed transaction being handed out.
type replay struct {
	tx *change.Tx
	r  *spoolReader // nil: nothing was spooled in this session
}

var _ source.Source = (*Stream)(nil)

// NewOpener returns the opener of pgoutput sessions described by cfg.
func NewOpener(cfg Config, log *slog.Logger) source.Opener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lastTimeline := new(atomic.Int32)
	var timelineFile *checkpoint.File
	if cfg.StateDir != "" {
		timelineFile = checkpoint.New(filepath.Join(cfg.StateDir, "source.timeline"))
	}
	return func(ctx context.Context) (source.Source, source.Identity, error) {
		src, err := Connect(ctx, cfg, log)
		if err != nil {
			return nil, source.Identity{}, err
		}
		st := &Stream{src: src, dec: decode.NewBorrowing(), log: log, spool: newSpool(src.cfg.SpoolDir),
			lastTimeline: lastTimeline, timelineFile: timelineFile}
		return st, source.Identity{Kind: "postgres", SystemID: src.SystemID}, nil
	}
}

// Session returns the underlying session (catalog queries, slot state).
func (st *Stream) Session() *Source { return st.src }

// Start prepares the publication and slot and starts streaming after held:
// from the slot's position for a new trail (held 0), else from held, after
// checking that the slot has not confirmed more than held (rule 4). The
// server silently moves a start below confirmed_flush_lsn up to it, so the
// check must happen here. ctx's end interrupts a blocked Next.
func (st *Stream) Start(ctx context.Context, held change.LSN) (change.LSN, error) {
	if err := st.checkFork(ctx, held); err != nil {
		return 0, err
	}
	slot, created, err := st.src.Prepare(ctx)
	if err != nil {
		return 0, err
	}
	start := held
	switch {
	case held == 0:
		// A new trail: start where the slot is (just created, or left by an
		// operator). Nothing was ever acknowledged by this trail.
		st.log.Info("new trail: starting at the slot's position", "confirmed_flush_lsn", slot.ConfirmedFlushLSN.String(), "slot_created", created)
		start = slot.ConfirmedFlushLSN
	case slot.ConfirmedFlushLSN > held:
		return 0, fmt.Errorf("%w: slot %s confirmed_flush_lsn %s, trail holds up to %s: changes between them were acknowledged but never stored; re-create the slot and re-synchronise the target",
			source.ErrAhead, st.src.cfg.Slot, slot.ConfirmedFlushLSN, held)
	}
	if err := st.src.StartStream(ctx, start); err != nil {
		return 0, err
	}
	st.acked = start
	if err := st.recordTimeline(); err != nil {
		return 0, err
	}
	st.stopInterrupt = context.AfterFunc(ctx, st.src.Interrupt)
	if hb := st.src.cfg.Heartbeat; hb > 0 {
		st.nextHeartbeat = time.Now().Add(hb)
	} else {
		st.heartbeatOff = true
	}
	st.log.Info("pgoutput streaming", "slot", st.src.cfg.Slot, "start", start.String(), "standby", st.src.Standby,
		"server_version", st.src.ServerVersion)
	return start, nil
}

// Next receives and decodes until an event is ready or deadline passes,
// answering keepalives that ask for a reply and emitting heartbeats on an
// idle database.
func (st *Stream) Next(ctx context.Context, deadline time.Time) (source.Event, error) {
	if ev := st.queued; ev != nil {
		st.queued = nil
		return *ev, nil
	}
	for {
		if st.replay != nil {
			ev, err := st.nextReplayed(ctx)
			if err != nil || ev.Kind != source.None {
				return ev, err
			}
			continue
		}
		if err := st.timedWork(ctx); err != nil {
			return source.Event{}, err
		}
		wait := deadline
		if !st.heartbeatOff && st.nextHeartbeat.Before(wait) {
			wait = st.nextHeartbeat
		}
		msg, err := st.src.Receive(wait)
		if err != nil {
			if ctx.Err() != nil {
				return source.Event{}, nil
			}
			return source.Event{}, err
		}
		switch msg.Kind {
		case Timeout:
			if ctx.Err() != nil || !time.Now().Before(deadline) {
				return source.Event{}, nil
			}
		case Keepalive:
			st.serverWALEnd = max(st.serverWALEnd, msg.ServerWALEnd)
			st.replyDue = st.replyDue || msg.ReplyRequested
		case XLogData:
			st.sawData = true
			st.sent = msg.ServerClock
			ev, err := st.decode(ctx, msg.WALStart, msg.Data)
			if err != nil || ev.Kind != source.None {
				return ev, err
			}
		}
	}
}

// decode turns one pgoutput message into an event (None when the decoder
// only absorbed it).
func (st *Stream) decode(ctx context.Context, walStart change.LSN, data []byte) (source.Event, error) {
	ev, err := st.dec.Decode(walStart, data)
	if err != nil {
		return source.Event{}, Terminal(fmt.Errorf("decode pgoutput message at %s: %w", walStart, err))
	}
	switch ev.Kind {
	case decode.EventStreamStart:
		st.streamXID = ev.Stream.XID
		if err := st.spool.start(ev.Stream.XID, ev.Stream.First); err != nil {
			return source.Event{}, err
		}
		// Not every streamed transaction is large: with a small
		// logical_decoding_work_mem ordinary ones are streamed too.
		st.src.hintBulk(st.spool.records(ev.Stream.XID) >= bulkRows)
		if st.fwd != nil {
			if st.fwd.tx.XID == ev.Stream.XID && ev.Stream.First {
				// Streamed from its start again (the spool restarted it):
				// what was forwarded would be written twice.
				return st.withdraw("it is streamed from its start again"), nil
			}
			st.fwd.active = st.fwd.tx.XID == ev.Stream.XID
			return source.Event{}, nil
		}
		return st.startForward(ev.Stream), nil
	case decode.EventStreamStop:
		if st.fwd != nil {
			st.fwd.active = false
		}
		return source.Event{}, nil
	case decode.EventStreamData:
		if err := st.spool.add(st.streamXID, walStart, ev.Stream); err != nil {
			return source.Event{}, err
		}
		if st.spool.records(st.streamXID) == bulkRows {
			st.src.hintBulk(true)
		}
		if st.fwd != nil && st.fwd.active {
			return st.forwardData(ctx, walStart, ev.Stream, len(data))
		}
		return source.Event{}, nil
	case decode.EventStreamAbort:
		st.spool.abort(ev.Stream.XID, ev.Stream.SubXID)
		if ev.Stream.XID == ev.Stream.SubXID {
			st.log.Debug("streamed transaction aborted", "xid", ev.Stream.XID)
		}
		if st.fwd != nil && st.fwd.tx.XID == ev.Stream.XID {
			if ev.Stream.XID == ev.Stream.SubXID {
				return st.withdraw("it aborted"), nil
			}
			return st.withdraw("one of its subtransactions aborted"), nil
		}
		return source.Event{}, nil
	case decode.EventStreamCommit:
		st.hintBehind(ev.Tx)
		if st.fwd != nil {
			if st.fwd.tx.XID == ev.Tx.XID {
				return st.commitForwarded(ev.Tx), nil
			}
			begin, err := st.startReplay(ev.Tx)
			if err != nil {
				return source.Event{}, err
			}
			return st.withdrawBefore(begin, "another streamed transaction committed first"), nil
		}
		return st.startReplay(ev.Tx)
	}
	out, err := st.event(ctx, ev, len(data))
	if err != nil || out.Kind == source.None || st.fwd == nil {
		return out, err
	}
	return st.withdrawBefore(out, "an ordinary transaction arrived"), nil
}

// bulkRows changes (data messages, when streamed) make a transaction large
// enough for the socket reader to take the stream in gulps (batchReader,
// saturated).
const bulkRows = 1000

// behindLag: a transaction the server sends this long after its commit
// shows the stream catching up, which the socket reader may pace (pace.go).
// A live stream is milliseconds behind.
const behindLag = time.Second

// hintBehind tells the socket reader whether tx, whose Begin or Stream
// Commit is being decoded, was sent behindLag or more after its commit.
// From a primary both times are its clock. From a standby the send time is
// the standby's: its replay lag (and its clock's skew from the primary's)
// counts as behind too, which only lets the reader pace a stream that
// runs at saturatedRate or more.
func (st *Stream) hintBehind(tx *change.Tx) {
	st.src.hintBehind(decode.Time(st.sent).Sub(tx.CommitTime) >= behindLag)
}

// event turns a decoded message into an event of the seam.
func (st *Stream) event(ctx context.Context, ev decode.Event, size int) (source.Event, error) {
	out := source.Event{Bytes: size}
	switch ev.Kind {
	case decode.EventBegin:
		st.rows = 0
		st.src.hintBulk(false)
		st.hintBehind(ev.Tx)
		out.Kind, out.Tx = source.Begin, ev.Tx
	case decode.EventCommit:
		out.Kind, out.Tx = source.Commit, ev.Tx
	case decode.EventRelation:
		if err := st.src.FillPrimaryKey(ctx, ev.Relation); err != nil {
			return source.Event{}, err
		}
		out.Kind, out.Relation = source.Relation, ev.Relation
	case decode.EventChange:
		if st.rows++; st.rows == bulkRows {
			st.src.hintBulk(true)
		}
		out.Kind, out.Change = source.Change, ev.Change
	}
	return out, nil
}

// startReplay begins handing out a streamed transaction at its Stream
// Commit: its Begin now, its spooled messages and Commit on the next calls.
func (st *Stream) startReplay(tx *change.Tx) (source.Event, error) {
	spilled := st.spool.spilledBytes
	r, err := st.spool.commit(tx.XID)
	if err != nil {
		return source.Event{}, err
	}
	if r != nil {
		st.log.Debug("streamed transaction committed", "xid", tx.XID, "bytes", r.tx.bytes, "messages", r.tx.records,
			"spilled", r.tx.f != nil, "session_spilled_bytes", spilled)
	}
	if err := st.dec.Replay(tx); err != nil {
		if r != nil {
			r.close()
		}
		return source.Event{}, Terminal(err)
	}
	st.replay = &replay{tx: tx, r: r}
	return source.Event{Kind: source.Begin, Tx: tx}, nil
}

// nextReplayed hands out the next message of the transaction being
// replayed, decoded as an ordinary transaction's, then its Commit.
func (st *Stream) nextReplayed(ctx context.Context) (source.Event, error) {
	rp := st.replay
	if rp.r != nil {
		walStart, msg, ok, err := rp.r.next()
		if err != nil {
			return source.Event{}, err
		}
		if ok {
			ev, err := st.dec.Decode(walStart, msg)
			if err != nil {
				return source.Event{}, Terminal(fmt.Errorf("decode streamed transaction %d's message at %s: %w", rp.tx.XID, walStart, err))
			}
			return st.event(ctx, ev, len(msg))
		}
		rp.r.close()
	}
	st.replay = nil
	return source.Event{Kind: source.Commit, Tx: st.dec.EndReplay()}, nil
}

// timedWork answers a keepalive that asked for a reply and sends a due
// heartbeat.
func (st *Stream) timedWork(ctx context.Context) error {
	if st.replyDue {
		if err := st.src.SendStatus(context.Background(), st.acked, false); err != nil {
			return err
		}
		st.replyDue = false
	}
	if st.heartbeatOff || time.Now().Before(st.nextHeartbeat) {
		return nil
	}
	// Not while a forwarded transaction is open: the heartbeat's own
	// transaction would withdraw it (the transaction only paused).
	if !st.sawData && st.fwd == nil {
		sent, err := st.src.Heartbeat(ctx)
		if err != nil {
			st.log.Warn("heartbeat failed", "err", err)
		} else if !sent {
			st.log.Info("heartbeats off: the source is a standby and source.primary_dsn is not set")
			st.heartbeatOff = true
		}
	}
	st.sawData = false
	st.nextHeartbeat = time.Now().Add(st.src.cfg.Heartbeat)
	return nil
}

// Ack sends a standby status update with flush = pos (rule 2: set
// explicitly, only what the trail holds). When idle it reports the
// keepalive's WAL end as adoptable (rule 3): with nothing pending, no
// transaction can end at or below it that the trail lacks.
func (st *Stream) Ack(ctx context.Context, pos change.LSN, idle bool) (change.LSN, error) {
	if err := st.src.SendStatus(ctx, pos, false); err != nil {
		return 0, err
	}
	st.acked = pos
	// An open streamed transaction would be re-sent whole after a restart
	// anyway; still, adopt only when nothing at all is in flight.
	if idle && !st.dec.InTx() && !st.dec.InStream() && st.spool.open() == 0 && st.serverWALEnd > pos {
		return st.serverWALEnd, nil
	}
	return 0, nil
}

// Close ends the session.
func (st *Stream) Close() error {
	if st.stopInterrupt != nil {
		st.stopInterrupt()
	}
	if st.replay != nil && st.replay.r != nil {
		st.replay.r.close()
	}
	st.spool.close()
	st.src.Close()
	return nil
}
