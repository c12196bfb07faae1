package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/dsn"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
	"github.com/cdcd-io/cdcd/pkg/status"
)

// GuardConfig configures the WAL-retention guard. The zero value of every
// field means its default.
type GuardConfig struct {
	// Off disables the guard: the source has no replication slot (the
	// trigger-table source, whose change log `cdcd check` watches
	// instead). Default false.
	Off bool
	// Interval is how often the slot is read. Default 10s.
	Interval time.Duration
	// WarnBytes is the retained WAL (server position − restart_lsn) at which
	// the guard warns. Default 1 GiB.
	WarnBytes int64
	// AlertBytes is the retained WAL at which it alerts (error logs, the
	// cdcd_wal_guard_level metric at 2). wal_status "unreserved" alerts too.
	// Default 4 GiB.
	AlertBytes int64
}

func (c GuardConfig) defaults() GuardConfig {
	if c.Interval <= 0 {
		c.Interval = 10 * time.Second
	}
	if c.WarnBytes <= 0 {
		c.WarnBytes = 1 << 30
	}
	if c.AlertBytes <= 0 {
		c.AlertBytes = 4 << 30
	}
	return c
}

// Level is the guard's verdict on the slot.
type Level int

// The guard levels, in increasing severity.
const (
	LevelOK    Level = iota // retained WAL below the warn threshold
	LevelWarn               // retained WAL past WarnBytes
	LevelAlert              // past AlertBytes, or wal_status unreserved
	LevelLost               // the slot is invalidated or gone: cdcd stops
)

func (l Level) String() string {
	return [...]string{"ok", "warn", "alert", "lost"}[l]
}

// ErrSlotInvalidated is returned by Service.Run when the guard found the
// slot invalidated (or dropped) while cdcd ran. cdcd never re-creates it:
// the changes in between are lost, so the targets must be re-synchronised.
var ErrSlotInvalidated = errors.New("replication slot invalidated")

// monitor reads the source's slot and WAL position every Interval, and on
// demand when a report is served (refresh): the guard's input, the
// denominator of every lag, and the samples that turn lag bytes into seconds.
type monitor struct {
	cfg  GuardConfig
	dsn  string
	slot string
	log  *slog.Logger
	now  func() time.Time

	// readMu serialises reads (the run loop's and refresh's): they share
	// conn. readStart is when the last read began; ended, that run returned.
	readMu    sync.Mutex
	conn      *pgx.Conn
	readStart time.Time
	ended     bool
	stop      func(error) // run's: the slot is lost

	mu      sync.Mutex
	state   status.SlotState
	read1   bool // a read succeeded: state is the slot's, not a zero value
	readErr string
	level   Level
	seen    bool     // the slot existed at some read
	samples []sample // server positions over time, ascending
	alerts  func(Level)
}

// refreshTimeout bounds an on-demand read: a report is served with the last
// state (and its read error) rather than hang on an unreachable source.
const refreshTimeout = 5 * time.Second

type sample struct {
	at  time.Time
	lsn change.LSN
}

// maxSamples bounds the sample history (a day at the default interval);
// older lags then read as at least the history's span.
const maxSamples = 8640

// run polls until ctx is done. It calls stop once, with an
// ErrSlotInvalidated error, when the slot is lost (found by its own poll or
// by a refresh).
func (m *monitor) run(ctx context.Context, stop func(error)) {
	if m.cfg.Off {
		return
	}
	m.readMu.Lock()
	m.stop = stop
	m.readMu.Unlock()
	defer func() {
		m.readMu.Lock()
		defer m.readMu.Unlock()
		m.ended = true
		if m.conn != nil {
			m.conn.Close(context.Background())
			m.conn = nil
		}
	}()
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		m.readMu.Lock()
		lost := m.pollLocked(ctx)
		m.readMu.Unlock()
		if lost {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh reads the slot now, so that a report served after it reflects the
// source as of the request, not as of the last periodic poll (up to
// Interval old, possibly from before capture created the slot). Concurrent
// callers share reads: one that began after the call counts. It does
// nothing before run starts or after it returned.
func (m *monitor) refresh(ctx context.Context) {
	asked := time.Now()
	m.readMu.Lock()
	defer m.readMu.Unlock()
	if m.stop == nil || m.ended || m.readStart.After(asked) {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	m.pollLocked(rctx)
}

// pollLocked polls once with readMu held and, when the slot is found lost,
// calls stop; it reports whether it did.
func (m *monitor) pollLocked(ctx context.Context) (lost bool) {
	m.readStart = time.Now()
	if err := m.poll(ctx); err != nil {
		m.stop(err)
		return true
	}
	return false
}

// poll reads the slot once and applies the guard; a non-nil error means
// the pipeline must stop. Called with readMu held.
func (m *monitor) poll(ctx context.Context) error {
	st, err := m.read(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.mu.Lock()
			first := m.readErr == ""
			m.readErr = err.Error()
			m.mu.Unlock()
			if first {
				m.log.Warn("WAL guard cannot read the slot; retrying", "slot", m.slot, "err", err)
			}
		}
		return nil
	}
	now := m.now()
	m.mu.Lock()
	m.readErr = ""
	m.state, m.read1 = st, true
	if n := len(m.samples); st.Server != 0 && (n == 0 || st.Server > m.samples[n-1].lsn) {
		if n == maxSamples {
			m.samples = append(m.samples[:0], m.samples[n/2:]...)
		}
		m.samples = append(m.samples, sample{at: now, lsn: st.Server})
	}
	lv, why := m.evaluate(st)
	prev := m.level
	m.level = lv
	m.mu.Unlock()
	if lv == prev {
		return nil
	}
	if m.alerts != nil && lv > prev {
		m.alerts(lv)
	}
	attrs := []any{"slot", m.slot, "retained_wal_bytes", st.RetainedWALBytes, "wal_status", st.WALStatus,
		"warn_bytes", m.cfg.WarnBytes, "alert_bytes", m.cfg.AlertBytes}
	if st.SafeWALBytes != nil {
		attrs = append(attrs, "safe_wal_bytes", *st.SafeWALBytes)
	}
	switch lv {
	case LevelOK:
		m.log.Info("WAL guard: slot retention back to normal", attrs...)
	case LevelWarn:
		m.log.Warn("WAL guard: "+why+"; check that cdcd keeps up and that no long transaction runs on the source", attrs...)
	case LevelAlert:
		m.log.Error("WAL guard ALERT: "+why+"; the source's disk fills (or, with max_slot_wal_keep_size, the slot will be invalidated) unless cdcd catches up", attrs...)
	case LevelLost:
		err := fmt.Errorf("%w: slot %s %s: changes were lost on the source; cdcd stops and never re-creates the slot itself: drop it, re-create it and re-synchronise the targets", ErrSlotInvalidated, m.slot, why)
		m.log.Error("WAL guard: "+err.Error(), attrs...)
		return postgres.Terminal(err)
	}
	return nil
}

// evaluate maps a slot state to a guard level. Called with mu held.
func (m *monitor) evaluate(st status.SlotState) (Level, string) {
	if !st.Exists {
		if m.seen {
			return LevelLost, "was dropped while cdcd ran"
		}
		return LevelOK, "" // not created yet: capture creates it or fails
	}
	m.seen = true
	switch {
	case st.Invalidated != "":
		return LevelLost, "is invalidated (" + st.Invalidated + ")"
	case st.WALStatus == "unreserved":
		return LevelAlert, "wal_status is unreserved: the slot retains more WAL than max_slot_wal_keep_size allows and will be invalidated at the next checkpoint"
	case st.RetainedWALBytes >= m.cfg.AlertBytes:
		return LevelAlert, fmt.Sprintf("the slot retains %s of WAL (alert at %s)", status.Bytes(st.RetainedWALBytes), status.Bytes(m.cfg.AlertBytes))
	case st.RetainedWALBytes >= m.cfg.WarnBytes:
		return LevelWarn, fmt.Sprintf("the slot retains %s of WAL (warn at %s)", status.Bytes(st.RetainedWALBytes), status.Bytes(m.cfg.WarnBytes))
	}
	return LevelOK, ""
}

func (m *monitor) read(ctx context.Context) (status.SlotState, error) {
	if m.conn == nil || m.conn.IsClosed() {
		cfg, err := pgx.ParseConfig(m.dsn)
		if err != nil {
			return status.SlotState{}, dsn.RedactError(err, dsn.Password(m.dsn))
		}
		cfg.RuntimeParams["application_name"] = "cdcd-monitor"
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m.conn, err = pgx.ConnectConfig(cctx, cfg)
		cancel()
		if err != nil {
			return status.SlotState{}, fmt.Errorf("connect to source %s@%s:%d/%s: %w", cfg.User, cfg.Host, cfg.Port, cfg.Database, dsn.RedactError(err, cfg.Password))
		}
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := status.QuerySlot(qctx, m.conn, m.slot)
	if err != nil {
		m.conn.Close(context.Background())
		m.conn = nil
	}
	return st, err
}

// snapshot returns the last state read, the read error (if the last read
// failed, or notRead before any read succeeded) and the guard level.
func (m *monitor) snapshot() (status.SlotState, string, Level) {
	m.mu.Lock()
	defer m.mu.Unlock()
	readErr := m.readErr
	switch {
	case m.cfg.Off:
		readErr = noSlot
	case !m.read1 && readErr == "":
		readErr = notRead
	}
	return m.state, readErr, m.level
}

// notRead is the slot's error in a report before the monitor has read it:
// its Exists false then means unknown, not missing.
const notRead = "the slot has not been read yet"

// noSlot is the slot's error in a report when the guard is off.
const noSlot = "no replication slot: the source is not pgoutput"

// lagSeconds is how long ago the source's WAL first passed pos: 0 when it
// has not (as far as the last read knows).
func (m *monitor) lagSeconds(pos change.LSN, now time.Time) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := sort.Search(len(m.samples), func(i int) bool { return m.samples[i].lsn > pos })
	if i == len(m.samples) {
		return 0
	}
	return max(0, now.Sub(m.samples[i].at).Seconds())
}

// txLog maps capture's durable positions to its cumulative transaction
// count, so a sink's position tells how many captured transactions it has
// yet to apply.
type txLog struct {
	mu sync.Mutex
	s  []txSample
}

type txSample struct {
	lsn change.LSN
	cum uint64
}

const maxTxSamples = 1 << 16

func (t *txLog) add(lsn change.LSN, cum uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := len(t.s); n > 0 && lsn <= t.s[n-1].lsn {
		return
	}
	if len(t.s) == maxTxSamples {
		// Thin out the history: every other sample, keeping the newest.
		k := 0
		for i := 1; i < len(t.s); i += 2 {
			t.s[k] = t.s[i]
			k++
		}
		t.s = t.s[:k]
	}
	t.s = append(t.s, txSample{lsn, cum})
}

// behind counts the transactions captured in this process past pos.
func (t *txLog) behind(pos change.LSN) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.s)
	if n == 0 {
		return 0
	}
	i := sort.Search(n, func(i int) bool { return t.s[i].lsn > pos })
	var at uint64
	if i > 0 {
		at = t.s[i-1].cum
	}
	return int64(t.s[n-1].cum - at)
}
