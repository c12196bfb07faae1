// Package capture is cdcd's "extract": it reads a source's whole
// transactions through the source seam (package source: pgoutput or trigger
// tables), writes them to the trail, and acknowledges the source only for
// what the trail holds durably.
//
// The acknowledgement rules (see DESIGN.md) live in this file and loop.go;
// the stream-specific halves live in the source (source/postgres: Stream):
//
//  1. The ack position is a transaction's end LSN, never its commit LSN.
//  2. Only fsynced trail data is acked (the source sets pgoutput's flush
//     field explicitly).
//  3. When nothing is pending (no open transaction, nothing unsynced) a
//     position the source reports as adoptable (pgoutput: the keepalive's
//     WAL end) is adopted — after it is stored durably in the ack
//     checkpoint, so rule 4 can still be checked on restart.
//  4. On start, a source that has acknowledged more than the trail (and the
//     ack checkpoint) holds means data was acked but not stored: capture
//     refuses to start (source.ErrAhead).
//  5. Transactions whose commit is below the trail's last durable end LSN
//     are skipped (confirmed_flush_lsn can go backwards after a crash).
//  6. The source is used from one goroutine: receive and acknowledgements
//     happen on the loop's goroutine.
package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/checkpoint"
	"github.com/cdcd-io/cdcd/pkg/source"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// Config configures a capture. The zero value of every field means its default.
type Config struct {
	// Source configures the PostgreSQL (pgoutput) source.
	Source postgres.Config
	// Open, when set, opens this source instead of the pgoutput source
	// described by Source (the trigger-table source). Source's
	// StatusInterval still sets the acknowledgement interval.
	Open source.Opener
	// TrailDir is the trail directory. Required.
	TrailDir string
	// Trail configures the trail writer (segment size). Its SystemID is set
	// by capture from the source.
	Trail trail.Options
	// GroupCommitDelay is how long a commit may wait for more commits to
	// share its fsync when no fsync is running. Fsyncs run beside the stream,
	// so commits arriving during one already share the next. Default 1ms.
	GroupCommitDelay time.Duration
	// GroupCommitInterval caps the pause capture leaves between two trail
	// fsyncs: twice the duration of the last one. Under a steady stream of
	// small transactions fsyncs otherwise run back to back, a hundred or
	// more a second, and compete for the disk with the source's WAL flushes
	// when both share it. It bounds what the pause adds to a commit's
	// latency. Default 20ms.
	GroupCommitInterval time.Duration
	// GroupCommitBytes forces an fsync once this many bytes of committed
	// transactions are unsynced. Default 8 MiB.
	GroupCommitBytes int64
	// AckInterval is the shortest time between two acknowledgements of new
	// durable positions (status updates are also sent every
	// Source.StatusInterval and whenever the server asks). Default 100ms.
	AckInterval time.Duration
	// Applied, when set (`capture.ack: applied`), is the lowest end LSN
	// every sink has applied: the source is then acknowledged only up to
	// it, never past what the trail holds either, so a lost trail (a dead
	// cdcd host) loses nothing: a new one resumes from the slot and the
	// sinks skip what they applied. The source keeps the WAL from there
	// while a sink is behind. A new trail is then numbered above any
	// earlier one (trail.Options.FirstSeq). Default nil: acknowledge what
	// the trail holds durably.
	Applied func() change.LSN
	// MinBackoff and MaxBackoff bound the capped exponential backoff between
	// reconnects. Defaults 500ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c Config) defaults() Config {
	c.Source = c.Source.Defaults()
	if c.GroupCommitDelay <= 0 {
		c.GroupCommitDelay = time.Millisecond
	}
	if c.GroupCommitInterval <= 0 {
		c.GroupCommitInterval = 20 * time.Millisecond
	}
	if c.GroupCommitBytes <= 0 {
		c.GroupCommitBytes = 8 << 20
	}
	if c.AckInterval <= 0 {
		c.AckInterval = 100 * time.Millisecond
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// ErrSlotAhead is returned when the source has acknowledged more than the
// trail holds durably (a slot's confirmed_flush_lsn past the trail): the
// source was told to discard changes cdcd never stored. Restarting cannot
// recover it; the target must be re-synchronised. It is source.ErrAhead.
var ErrSlotAhead = source.ErrAhead

// Stats is a snapshot of a capture's progress.
type Stats struct {
	// Durable is the end LSN of the last transaction fsynced in the trail.
	Durable change.LSN
	// Acked is the last flush position sent to the source.
	Acked change.LSN
	// Transactions and Changes count what was written to the trail in this
	// process (skipped duplicates excluded).
	Transactions, Changes uint64
	// Reconnects counts reconnections after retriable errors.
	Reconnects uint64
	// Syncs counts trail group commits (fsyncs), and SyncTime is the time
	// they took: SyncTime / Syncs is the disk's commit latency as the trail
	// sees it.
	Syncs    uint64
	SyncTime time.Duration
	// Forwarded counts transactions written to the trail as they arrived,
	// before their commit (source.Begin with FinalLSN 0), and committed;
	// Withdrawn those the source took back (source.Withdraw), which are
	// written again whole if they commit.
	Forwarded, Withdrawn uint64
}

// Capture is one running extract. Create it with New and call Run.
type Capture struct {
	cfg     Config
	log     *slog.Logger
	ack     *checkpoint.File
	w       *trail.Writer
	trailW  atomic.Pointer[trail.Writer] // w, for other goroutines
	statsMu sync.Mutex
	stats   Stats
	// OnDurable, when set, is called from the capture goroutine after each
	// trail fsync with the durable end LSN (tests and status use it).
	OnDurable func(change.LSN)
	// OnConnected, when set, is called after each successful start of
	// streaming (systemd readiness uses it).
	OnConnected func()
	// OnChange, when set, is called from the capture goroutine for every
	// change written to the trail (per-table metrics use it). It must be
	// quick and must not keep the change.
	OnChange func(*change.Change)
	// loopNanos is the wall time of the stream loop's last turn (0 when not
	// streaming): the systemd watchdog pings only while it moves.
	loopNanos atomic.Int64
}

// LastLoop is when the streaming loop last turned; zero while no session is
// streaming (connecting, or waiting to reconnect). Safe for concurrent use.
func (c *Capture) LastLoop() time.Time {
	if n := c.loopNanos.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// New validates cfg and returns a capture ready to Run.
func New(cfg Config) (*Capture, error) {
	cfg = cfg.defaults()
	if cfg.TrailDir == "" {
		return nil, errors.New("trail.dir is empty: set it to a directory for the trail")
	}
	if cfg.Open == nil {
		if cfg.Source.SpoolDir == "" {
			// Streamed transactions wait beside the trail, on the disk
			// sized for it.
			cfg.Source.SpoolDir = filepath.Join(cfg.TrailDir, "spool")
		}
		if cfg.Source.StateDir == "" {
			cfg.Source.StateDir = cfg.TrailDir
		}
		cfg.Open = postgres.NewOpener(cfg.Source, cfg.Logger)
	}
	return &Capture{
		cfg: cfg,
		log: cfg.Logger,
		ack: checkpoint.New(filepath.Join(cfg.TrailDir, "capture.ack")),
	}, nil
}

// Stats returns progress counters. Safe for concurrent use.
func (c *Capture) Stats() Stats {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	return c.stats
}

func (c *Capture) updateStats(f func(*Stats)) {
	c.statsMu.Lock()
	f(&c.stats)
	c.statsMu.Unlock()
}

// Trail returns the trail writer once capture has opened it (nil before).
// In-process readers use its Durable and Changed. Safe for concurrent use.
func (c *Capture) Trail() *trail.Writer { return c.trailW.Load() }

// Run captures until ctx is cancelled (returns nil after a clean stop) or a
// terminal error occurs. Retriable errors reconnect with capped exponential
// backoff, resuming from the trail's durable position.
func (c *Capture) Run(ctx context.Context) (err error) {
	defer func() {
		if c.w != nil {
			if cerr := c.w.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("close trail: %w", cerr)
			}
		}
	}()
	backoff := c.cfg.MinBackoff
	for {
		connected, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			return nil
		}
		if source.IsTerminal(err) || errors.Is(err, source.ErrAhead) || errors.Is(err, trail.ErrSystemIDMismatch) || errors.Is(err, trail.ErrCorrupt) || errors.Is(err, errTrail) {
			return err
		}
		if connected {
			backoff = c.cfg.MinBackoff
		}
		c.updateStats(func(s *Stats) { s.Reconnects++ })
		c.log.Warn("source session ended; reconnecting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

// errTrail marks trail write errors: they are sticky, so reconnecting
// cannot help.
var errTrail = errors.New("trail")

func trailErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", errTrail, err)
}

// session runs one connection to the source. connected reports whether
// streaming started (to reset the backoff).
func (c *Capture) session(ctx context.Context) (connected bool, err error) {
	src, id, err := c.cfg.Open(ctx)
	if err != nil {
		return false, err
	}
	defer src.Close()

	if c.w == nil {
		opts := c.cfg.Trail
		opts.SystemID = id.SystemID
		opts.SourceKind = id.Kind
		opts.Logger = c.log
		if c.cfg.Applied != nil && opts.FirstSeq == 0 {
			// Only a new trail takes it: above every seq an earlier trail
			// (started earlier, at most one record per nanosecond) used.
			opts.FirstSeq = uint64(c.cfg.Now().UnixNano())
		}
		w, err := trail.Open(c.cfg.TrailDir, opts)
		if err != nil {
			if errors.Is(err, trail.ErrSystemIDMismatch) {
				return false, fmt.Errorf("trail %s belongs to another source than %s %016x: point trail.dir at a new directory or the source at the original database: %w",
					c.cfg.TrailDir, id.Kind, id.SystemID, err)
			}
			return false, fmt.Errorf("open trail %s: %w", c.cfg.TrailDir, err)
		}
		c.w = w
		c.trailW.Store(w)
	} else if c.w.SystemID() != 0 && c.w.SystemID() != id.SystemID {
		return false, fmt.Errorf("source identifier changed to %016x (trail has %016x): %w", id.SystemID, c.w.SystemID(), trail.ErrSystemIDMismatch)
	}

	// Rule 4: the trail, or the ack checkpoint for idle-adopted positions,
	// must hold everything the source has confirmed; the source checks.
	acked, _, err := c.ack.Load()
	if err != nil {
		return false, err
	}
	held := max(c.w.LastEndLSN(), change.LSN(acked))
	start, err := src.Start(ctx, held)
	if err != nil {
		return false, err
	}
	c.log.Info("capture streaming", "source", id.Kind, "start", start.String(), "trail_end", c.w.LastEndLSN().String())
	if c.OnConnected != nil {
		c.OnConnected()
	}
	l := newLoop(c, src, start)
	defer c.loopNanos.Store(0)
	return true, l.run(ctx)
}
