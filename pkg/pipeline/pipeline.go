// Package pipeline wires one capture and its apply workers into a running
// daemon: capture writes the trail, each sink's worker reads it from its own
// position, and segments are purged once every sink is past them. This is
// what `cdcd run` (and the systemd service) runs; it is also the embeddable
// entry point of the library.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cdcd-io/cdcd/pkg/apply"
	"github.com/cdcd-io/cdcd/pkg/capture"
	"github.com/cdcd-io/cdcd/pkg/snapshot"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// Config configures a pipeline. The zero value of every field means its default.
type Config struct {
	// Capture configures the source side.
	Capture capture.Config
	// Sinks are the apply workers. Required: at least one.
	Sinks []Sink
	// PurgeInterval is how often fully applied trail segments are deleted.
	// Default 10s.
	PurgeInterval time.Duration
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
	// Setup runs before capture starts (the publication's row filters); its
	// error stops Run. Default none.
	Setup func(ctx context.Context) error
}

// Sink is one configured sink.
type Sink struct {
	// Apply configures the worker; Name, TrailDir, Durable and Wake are
	// filled in by the pipeline when empty.
	Apply apply.Config
	// Open connects the sink.
	Open apply.OpenFunc
	// Snapshot, when set, copies the source tables into the sink before its
	// worker starts applying (the trail keeps the stream meanwhile); its
	// error stops the sink like a terminal apply error. Default none.
	Snapshot *snapshot.Runner
}

// Pipeline is a capture plus its apply workers.
type Pipeline struct {
	cfg     Config
	log     *slog.Logger
	capture *capture.Capture
	workers []*apply.Worker
	// snapshots[i] is workers[i]'s snapshot, nil when none.
	snapshots []*snapshot.Runner
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
	c, err := capture.New(cfg.Capture)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{cfg: cfg, log: cfg.Logger, capture: c}
	names := map[string]bool{}
	for _, s := range cfg.Sinks {
		ac := s.Apply
		if names[ac.Name] {
			return nil, fmt.Errorf("sink name %q is used twice: names key the checkpoints, make them unique", ac.Name)
		}
		names[ac.Name] = true
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
		w, err := apply.New(ac, s.Open)
		if err != nil {
			return nil, err
		}
		p.workers = append(p.workers, w)
		p.snapshots = append(p.snapshots, s.Snapshot)
	}
	return p, nil
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
	if p.cfg.Setup != nil {
		if err := p.cfg.Setup(ctx); err != nil {
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
