// Package pipeline wires one capture and its apply workers into a running
// daemon: capture writes the trail, each sink's worker reads it from its own
// position, and segments are purged once every sink is past them. This is
// what `cdcd run` (and the systemd service) runs; it is also the embeddable
// entry point of the library: New does all the wiring (table mapping,
// snapshot runners, the publication's row filters) from a Config built in Go,
// and pkg/config only turns a YAML file into that Config.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/apply"
	"github.com/cdcd-io/cdcd/pkg/capture"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/mapping"
	"github.com/cdcd-io/cdcd/pkg/schema"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/snapshot"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// Config configures a pipeline. The zero value of every field means its default.
type Config struct {
	// Capture configures the source side.
	Capture capture.Config
	// Trigger, when set, captures with the trigger-table source (package
	// source/trigger) instead of pgoutput: Capture.Open and Capture.Source
	// are then the pipeline's to fill. StateDir defaults to the trail
	// directory, Logger to Logger. Default nil: pgoutput.
	Trigger *trigger.Config
	// Sinks are the apply workers. Required: at least one.
	Sinks []Sink
	// AckApplied acknowledges the source only up to the lowest position
	// every sink has applied (`capture.ack: applied`) instead of what the
	// trail holds durably: a lost trail directory then loses nothing, at
	// the cost of WAL kept on the source while a sink is behind. It sets
	// Capture.Applied. Default false.
	AckApplied bool
	// PurgeInterval is how often fully applied trail segments are deleted.
	// Default 10s.
	PurgeInterval time.Duration
	// Tables selects, renames and filters the replicated tables and
	// columns, for the stream and the snapshot alike. Row filters become
	// publication row filters on the source (PostgreSQL 15+). Default:
	// every published table, unchanged.
	Tables mapping.Config
	// Snapshot copies the source tables into each sink before its worker
	// starts applying. Default: no snapshot (Mode never).
	Snapshot Snapshot
	// WrapSink decorates each sink's stream opener (metrics, logging); it
	// sits outside the table mapping, and snapshots open the sink without
	// it. Default none.
	WrapSink func(name string, open apply.OpenFunc) apply.OpenFunc
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
}

// Snapshot configures the initial copy into every sink (see package
// snapshot). The zero value of every field means its default.
type Snapshot struct {
	// Mode is snapshot.ModeNever, ModeInitial or ModeAlways. Default never.
	Mode string
	// Parallelism is the number of copy workers per sink. Default 4.
	Parallelism int
	// ChunkRows is the size of the key ranges large tables are split
	// into. Default 250000.
	ChunkRows int64
	// CreateSchema creates missing target schemas, types and tables.
	// Default false: they must exist.
	CreateSchema bool
	// Progress receives live per-table progress bars (a terminal). Default
	// nil: progress is logged instead.
	Progress io.Writer
}

// Sink is one configured sink.
type Sink struct {
	// Apply configures the worker; Name, TrailDir, Durable and Wake are
	// filled in by the pipeline when empty. Name is required.
	Apply apply.Config
	// Open connects the sink. Required. The pipeline adds the table
	// mapping around what it returns.
	Open apply.OpenFunc
}

// Pipeline is a capture plus its apply workers.
type Pipeline struct {
	cfg     Config
	log     *slog.Logger
	mapping *mapping.Map
	capture *capture.Capture
	workers []*apply.Worker
	// snapshots[i] is workers[i]'s snapshot, nil when none.
	snapshots []*snapshot.Runner
	// exports places the snapshots of a trigger source; nil otherwise.
	exports *trigger.Exports
}

// New validates cfg and builds the pipeline.
func New(cfg Config) (*Pipeline, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PurgeInterval <= 0 {
		cfg.PurgeInterval = 10 * time.Second
	}
	if len(cfg.Sinks) == 0 {
		return nil, errors.New("no sink configured")
	}
	if cfg.Capture.Logger == nil {
		cfg.Capture.Logger = cfg.Logger
	}
	m, err := mapping.New(cfg.Tables)
	if err != nil {
		return nil, fmt.Errorf("tables: %w", err)
	}
	p := &Pipeline{cfg: cfg, log: cfg.Logger, mapping: m}
	if cfg.Trigger != nil {
		if err := p.triggerSource(); err != nil {
			return nil, err
		}
	}
	if p.cfg.Capture.Source.ForwardStreamed && p.snapshotSkips() {
		// A snapshot's sinks drop changes by their transaction's commit
		// position (mapping.Wrap), which a transaction forwarded before its
		// commit does not have yet.
		p.cfg.Capture.Source.ForwardStreamed = false
		p.log.Info("source.forward_streamed off: a snapshot's sink drops changes by commit position")
	}
	if cfg.AckApplied && p.cfg.Capture.Applied == nil {
		p.cfg.Capture.Applied = p.appliedLSN
	}
	c, err := capture.New(p.cfg.Capture)
	if err != nil {
		return nil, err
	}
	p.capture = c
	cfg = p.cfg
	names := map[string]bool{}
	for _, s := range cfg.Sinks {
		ac := s.Apply
		if ac.Name == "" {
			return nil, errors.New("a sink has no name: names key the checkpoints, give each sink a unique one")
		}
		if names[ac.Name] {
			return nil, fmt.Errorf("sink name %q is used twice: names key the checkpoints, make them unique", ac.Name)
		}
		names[ac.Name] = true
		if s.Open == nil {
			return nil, fmt.Errorf("sink %q: Open is required", ac.Name)
		}
		snap, err := p.snapshotRunner(ac.Name, s.Open)
		if err != nil {
			return nil, fmt.Errorf("sink %q: %w", ac.Name, err)
		}
		if ac.TrailDir == "" {
			ac.TrailDir = cfg.Capture.TrailDir
		}
		if ac.Durable == nil {
			ac.Durable = p.durable
		}
		if ac.Wake == nil {
			ac.Wake = p.changed
		}
		if ac.Speculate == nil {
			ac.Speculate = p.generation
		}
		if ac.Logger == nil {
			ac.Logger = cfg.Logger
		}
		open := p.mapped(ac.Name, s.Open, snap != nil)
		if cfg.WrapSink != nil {
			open = cfg.WrapSink(ac.Name, open)
		}
		w, err := apply.New(ac, open)
		if err != nil {
			return nil, fmt.Errorf("sink %q: %w", ac.Name, err)
		}
		p.workers = append(p.workers, w)
		p.snapshots = append(p.snapshots, snap)
	}
	return p, nil
}

// appliedLSN is the lowest end LSN the sinks have applied (0 while one has
// not read its position yet): capture's limit under AckApplied.
func (p *Pipeline) appliedLSN() change.LSN {
	var low change.LSN
	for i, w := range p.workers {
		if e := w.Stats().Position.EndLSN; i == 0 || e < low {
			low = e
		}
	}
	return low
}

// snapshotRunner is the sink's snapshot, nil when the mode is never. The
// runner opens the sink without the stream's mapping: it maps rows itself.
func (p *Pipeline) snapshotRunner(name string, open apply.OpenFunc) (*snapshot.Runner, error) {
	sc := p.cfg.Snapshot
	if !p.snapshotting() {
		return nil, nil
	}
	cfg := snapshot.Config{
		Mode: sc.Mode, Parallelism: sc.Parallelism, ChunkRows: sc.ChunkRows, CreateSchema: sc.CreateSchema,
		Source: p.cfg.Capture.Source, Map: p.mapping, StateDir: p.cfg.Capture.TrailDir,
		Sink: name, Open: open, Logger: p.log, Bar: sc.Progress,
	}
	if ex := p.exports; ex != nil {
		cfg.Export = func(ctx context.Context) (*snapshot.Exported, error) {
			e, err := ex.Export(ctx)
			if err != nil {
				return nil, err
			}
			return &snapshot.Exported{Name: e.Name, LSN: e.LSN, Release: func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := e.Close(ctx); err != nil {
					p.log.Warn("snapshot: end the exported snapshot", "sink", name, "err", err)
				}
			}}, nil
		}
		include := p.cfg.Trigger.Include
		cfg.Tables = func(ctx context.Context, q *pgx.Conn) ([]schema.Name, error) {
			tables, err := trigger.Tables(ctx, q, include)
			if err != nil {
				return nil, err
			}
			names := make([]schema.Name, len(tables))
			for i, t := range tables {
				names[i] = schema.Name{Schema: t.Schema, Name: t.Name}
			}
			return names, nil
		}
	}
	return snapshot.New(cfg)
}

// snapshotSkips reports whether a sink may drop changes by their
// transaction's commit position: a snapshot is configured, or one taken
// before left its consistent points (snapshot.State.SkipLSNs) that the
// mapping still applies.
func (p *Pipeline) snapshotSkips() bool {
	if p.snapshotting() {
		return true
	}
	names := make([]string, len(p.cfg.Sinks))
	for i, s := range p.cfg.Sinks {
		names[i] = s.Apply.Name
	}
	return snapshot.Skips(p.cfg.Capture.TrailDir, names...)
}

func (p *Pipeline) snapshotting() bool {
	mode := p.cfg.Snapshot.Mode
	return mode != "" && mode != snapshot.ModeNever
}

// triggerSource makes the trigger source capture's: its opener, and for
// snapshots the Exports that place their snapshots at batch boundaries.
func (p *Pipeline) triggerSource() error {
	tc := *p.cfg.Trigger
	if p.mapping.HasWhere() {
		return errors.New("tables: row filters (where) need the pgoutput source's publication; the trigger source has none")
	}
	if tc.StateDir == "" {
		tc.StateDir = p.cfg.Capture.TrailDir
	}
	if tc.Logger == nil {
		tc.Logger = p.cfg.Logger
	}
	if p.snapshotting() {
		p.exports = trigger.NewExports()
		tc.Exports = p.exports
	}
	p.cfg.Trigger = &tc
	p.cfg.Capture.Open = trigger.NewOpener(tc)
	// Snapshot workers connect with the source's DSN.
	p.cfg.Capture.Source = postgres.Config{DSN: tc.DSN}
	return nil
}

// mapped puts the mapping decorator around the sink: it renames and drops
// tables and columns, and drops the changes a snapshot already copied (the
// per-table consistent points in the snapshot's state file, read when the
// sink opens). An identity mapping without a snapshot needs no decorator.
func (p *Pipeline) mapped(name string, open apply.OpenFunc, snapshotted bool) apply.OpenFunc {
	if p.mapping.Identity() && !snapshotted {
		return open
	}
	m, stateDir := p.mapping, p.cfg.Capture.TrailDir
	return func(ctx context.Context) (sink.Sink, error) {
		inner, err := open(ctx)
		if err != nil {
			return nil, err
		}
		st, err := snapshot.LoadState(stateDir, name)
		if err == nil {
			var skip map[string]change.LSN
			if skip, err = st.SkipLSNs(); err == nil {
				return mapping.Wrap(inner, m, skip), nil
			}
		}
		if cerr := inner.Close(ctx); cerr != nil {
			p.log.Warn("close sink after a failed open", "sink", name, "err", cerr)
		}
		return nil, fmt.Errorf("read snapshot state of sink %q: %w", name, err)
	}
}

// durable bounds readers to the capture's synced trail (nothing before the
// trail is open).
func (p *Pipeline) durable() trail.Position {
	if w := p.capture.Trail(); w != nil {
		return w.Durable()
	}
	return trail.Position{}
}

// generation is the trail writer's rollback generation (see
// apply.Config.Speculate). Before capture has opened (and recovered) the
// trail it is odd, which holds speculative readers back: the tail on disk
// may still be cut by recovery.
func (p *Pipeline) generation() uint64 {
	if w := p.capture.Trail(); w != nil {
		return w.Generation()
	}
	return 1
}

var never = make(chan struct{})

func (p *Pipeline) changed() <-chan struct{} {
	if w := p.capture.Trail(); w != nil {
		return w.Changed()
	}
	return never
}

// Capture returns the pipeline's capture (for stats).
func (p *Pipeline) Capture() *capture.Capture { return p.capture }

// Workers returns the apply workers (for stats).
func (p *Pipeline) Workers() []*apply.Worker { return p.workers }

// Snapshots returns each worker's snapshot runner, nil where none (for
// status: Runner.Progress).
func (p *Pipeline) Snapshots() []*snapshot.Runner { return p.snapshots }

// Run runs until ctx is cancelled — then every worker finishes its
// in-flight batch, capture syncs and acknowledges, and Run returns nil — or
// until capture fails or every sink has stopped with a terminal error. A
// sink that stops leaves the others (and capture) running: its changes wait
// in the trail.
func (p *Pipeline) Run(ctx context.Context) error {
	// Workers open readers on the trail directory before capture has
	// connected to the source and created it.
	if err := os.MkdirAll(p.cfg.Capture.TrailDir, 0o700); err != nil {
		return fmt.Errorf("create trail directory: %w", err)
	}
	// The mappings' row filters become the publication's: capture must not
	// create a FOR ALL TABLES publication first.
	if p.cfg.Trigger == nil {
		if err := snapshot.PreparePublication(ctx, p.cfg.Capture.Source, p.mapping, p.log); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(p.workers)+1)
	captureDone := make(chan error, 1)

	wg.Add(1)
	go func() {
		defer wg.Done()
		err := p.capture.Run(ctx)
		if err != nil {
			err = fmt.Errorf("capture: %w", err)
			cancel()
		}
		captureDone <- err
	}()
	var mu sync.Mutex
	running := len(p.workers)
	var firstSinkErr error
	for i, w := range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if snap := p.snapshots[i]; snap != nil {
				if err = snap.Run(ctx); err != nil && ctx.Err() != nil {
					err = nil // shutdown: the snapshot resumes on the next start
				}
			}
			if err == nil && ctx.Err() == nil {
				err = w.Run(ctx)
			}
			if err == nil {
				return
			}
			p.log.Error("sink stopped; its changes stay in the trail until it is fixed and cdcd restarted", "sink", w.Name(), "err", err)
			mu.Lock()
			defer mu.Unlock()
			running--
			if firstSinkErr == nil {
				firstSinkErr = err
			}
			if running == 0 {
				errs <- firstSinkErr
				cancel()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.purgeLoop(ctx)
	}()
	wg.Wait()
	if err := <-captureDone; err != nil {
		return err
	}
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func (p *Pipeline) purgeLoop(ctx context.Context) {
	t := time.NewTicker(p.cfg.PurgeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w := p.capture.Trail()
		if w == nil {
			continue
		}
		low := p.Applied()
		if low == 0 {
			continue
		}
		if n, err := w.Purge(low + 1); err != nil {
			p.log.Warn("trail purge failed", "err", err)
		} else if n > 0 {
			p.log.Info("trail segments purged", "segments", n, "below_seq", low+1)
		}
	}
}

// Applied is the lowest trail position every sink has applied.
func (p *Pipeline) Applied() uint64 {
	var low uint64
	for i, w := range p.workers {
		if a := w.Applied(); i == 0 || a < low {
			low = a
		}
	}
	return low
}
