// Package snapshot copies the source tables into a sink before the stream
// is applied to it: consistently with the stream, in parallel within a
// table, and resumably.
//
// Consistency: the copy reads under a snapshot exported by a temporary
// logical slot (see exported), created once the pipeline's own slot exists.
// Each table records that snapshot's consistent point, and the stream
// applied to the sink drops the table's changes of transactions committed
// before it (mapping.Wrap). Apply starts only once the snapshot is complete.
//
// Parallelism: tables with a primary key and at least 2×ChunkRows rows are
// split into key ranges, keyless ones (for bulk-loading sinks) into ranges
// of heap pages; Parallelism workers, each holding a source
// transaction on the same snapshot, COPY chunks (binary where the types
// allow) and load them through the sink's bulk path — for PostgreSQL, COPY
// into the target — or, for other sinks, as batches of snapshot rows
// (Kafka: op "r").
//
// Resumption: see README "Snapshot" for the argument. In short, finished
// chunks are recorded atomically with their rows (PostgreSQL: a row in the
// target's snapshot_chunks table in the chunk's transaction; others: the
// state file after the sink accepted the rows) and are never copied again.
// The chunks left are copied under a new snapshot, newer than the first:
// for a table with a primary key the stream from the first snapshot's
// consistent point re-applied over it converges, since every change is
// applied idempotently by key and rows never move between key ranges
// (unless their key changes, which the stream replays as delete + insert);
// a table without a key (where a row's copy cannot be told from the
// stream's) is copied again whole under the new snapshot, emptied first
// when some of it was loaded, and takes that snapshot's consistent point
// as its own. Large keyless tables are split into ranges of heap pages
// (TID range scans) for the parallel copy; rows move between pages when
// updated, so such ranges hold only under one snapshot — which is all a
// keyless table needs.
package snapshot

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/dsn"
	"github.com/cdcd-io/cdcd/pkg/schema"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// Runner runs one sink's snapshot. Create it with New; Run it before the
// sink's apply worker starts.
type Runner struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	state    *State
	progress *progress
}

// New validates cfg.
func New(cfg Config) (*Runner, error) {
	cfg, err := cfg.defaults()
	if err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, log: cfg.Logger.With("sink", cfg.Sink), progress: newProgress()}, nil
}

// Mode is the configured mode.
func (r *Runner) Mode() string { return r.cfg.Mode }

// SkipLSNs returns the per-table consistent points of the complete
// snapshot (nil when none); see State.SkipLSNs.
func (r *Runner) SkipLSNs() (map[string]change.LSN, error) {
	st, err := LoadState(r.cfg.StateDir, r.cfg.Sink)
	if err != nil {
		return nil, err
	}
	return st.SkipLSNs()
}

// Run copies the tables unless the mode and the state say there is nothing
// to do. It returns nil once the snapshot is complete (or not needed).
func (r *Runner) Run(ctx context.Context) error {
	if r.cfg.Mode == ModeNever {
		return nil
	}
	st, err := LoadState(r.cfg.StateDir, r.cfg.Sink)
	if err != nil {
		return err
	}
	first, err := r.cfg.Open(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: open sink %s: %w", r.cfg.Sink, err)
	}
	defer first.Close(context.WithoutCancel(ctx))
	pos, err := position(ctx, first)
	if err != nil {
		return err
	}
	switch {
	case st != nil && !st.Complete:
		r.log.Info("snapshot: resuming", "snapshot", st.ID)
	case r.cfg.Mode == ModeInitial && st != nil:
		return nil
	case r.cfg.Mode == ModeInitial && pos.Seq > 0:
		r.log.Info("snapshot: the sink has applied changes already; no initial snapshot", "seq", pos.Seq)
		return nil
	default:
		st = nil // a new snapshot
	}

	// The workers' sinks connect to the target while the source exports
	// the snapshot and the tables are planned: their connection set-up need
	// not add up before the first chunk.
	opened := r.openSinks(ctx, first)
	defer opened.close(ctx)

	src, err := pgx.Connect(ctx, r.cfg.Source.DSN)
	if err != nil {
		return fmt.Errorf("snapshot: connect to source %s: %w", dsn.Redact(r.cfg.Source.DSN), dsn.RedactError(err, dsn.Password(r.cfg.Source.DSN)))
	}
	defer src.Close(context.WithoutCancel(ctx))
	exp, err := r.export(ctx, src)
	if err != nil {
		return err
	}
	defer exp.Close()

	// Every worker imports the snapshot before the exporting connection
	// may do anything else.
	conns := make([]*pgx.Conn, r.cfg.Parallelism)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(context.WithoutCancel(ctx))
			}
		}
	}()
	ig, ictx := errgroup.WithContext(ctx)
	for i := range conns {
		ig.Go(func() (err error) {
			conns[i], err = importSnapshot(ictx, r.cfg.Source.DSN, exp.Name)
			return err
		})
	}
	if err := ig.Wait(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	exp.Close()

	if st == nil {
		if st, err = r.plan(ctx, conns[0], first, exp.LSN); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.state = st
	r.mu.Unlock()
	if err := r.store(); err != nil {
		return err
	}
	sinks, err := opened.wait()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := r.copy(ctx, st, conns, sinks, pos, exp.LSN); err != nil {
		return err
	}
	r.mu.Lock() // Progress reads it concurrently (the status endpoint)
	st.Complete = true
	r.mu.Unlock()
	if err := r.store(); err != nil {
		return err
	}
	rows, _ := r.progress.totals()
	r.log.Info("snapshot complete", "snapshot", st.ID, "tables", len(st.Tables), "rows", rows, "elapsed", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// export exports the snapshot the copy reads under: Config.Export's, or a
// temporary slot's once capture has created the pipeline's slot.
func (r *Runner) export(ctx context.Context, src *pgx.Conn) (*Exported, error) {
	if r.cfg.Export != nil {
		exp, err := r.cfg.Export(ctx)
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		r.log.Info("snapshot: exported", "consistent_point", exp.LSN.String(), "snapshot", exp.Name)
		return exp, nil
	}
	var standby bool
	if err := src.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	mainSlot, err := waitSlot(ctx, src, r.cfg.Source.Slot, func() {
		r.log.Info("snapshot: waiting for capture to create the replication slot", "slot", r.cfg.Source.Slot)
	})
	if err != nil {
		return nil, err
	}
	exp, err := exportSnapshot(ctx, r.cfg.Source, standby)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if mainSlot > exp.LSN {
		exp.Close()
		return nil, fmt.Errorf("snapshot: slot %s confirmed %s, past the snapshot's consistent point %s: retry", r.cfg.Source.Slot, mainSlot, exp.LSN)
	}
	r.log.Info("snapshot: exported", "consistent_point", exp.LSN.String(), "snapshot", exp.Name, "standby", standby)
	return exp, nil
}

// plan lists and splits the tables and prepares the target.
func (r *Runner) plan(ctx context.Context, q *pgx.Conn, first sink.Sink, lsn change.LSN) (*State, error) {
	tables, err := listTables(ctx, q, r.cfg.Source.Publication, r.cfg.Tables, r.cfg.Map)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	st := &State{ID: fmt.Sprintf("%s@%d", lsn, time.Now().Unix()), LSN: lsn.String()}
	_, bulk := first.(sink.BulkLoader)
	for _, t := range tables {
		// Page ranges only where a restart can empty the table first.
		ch, err := chunks(ctx, q, t, r.cfg.chunkRows(t.Rows), bulk)
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		st.Tables = append(st.Tables, &TableState{Table: t, Skip: lsn.String(), Chunks: ch, Truncate: r.cfg.Mode == ModeAlways})
	}
	sc, canCreate := first.(sink.SchemaCreator)
	if canCreate {
		// A sink without bulk load (Oracle) creates its tables with their
		// keys: only bulk loads defer them.
		defs := make([]*schema.Table, 0, len(st.Tables))
		for _, t := range st.Tables {
			defs = append(defs, t.Table)
		}
		created, err := sc.EnsureTables(ctx, defs, r.cfg.CreateSchema, bulk)
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		for _, t := range st.Tables {
			if !bulk {
				continue
			}
			t.DeferredKey = slices.Contains(created, t.Table.Target.String())
			// Created tables have the source's types; existing ones passed
			// the type check. Either way binary COPY is exact when no type
			// carries server-specific OIDs.
			t.Binary = t.Table.BinarySafe() && !textOnly(first)
			if t.DeferredKey {
				t.Truncate = false // new and empty
			}
		}
	} else if r.cfg.CreateSchema {
		r.log.Info("snapshot: schema.create does not apply to this sink kind")
	}
	for _, t := range st.Tables {
		// A restart empties a page-split table: only one the snapshot
		// created, or truncates anyway, may hold rows of its own.
		if t.pageSplit() && !t.DeferredKey && !t.Truncate {
			t.Chunks = []Chunk{{}}
		}
		r.log.Info("snapshot: table planned", "source", t.Table.Source.String(), "target", t.Table.Target.String(),
			"rows_estimate", t.Table.Rows, "chunks", len(t.Chunks), "binary", t.Binary)
	}
	return st, nil
}

// textOnly reports a sink.TextLoader that takes COPY text only.
func textOnly(s sink.Sink) bool {
	tl, ok := s.(sink.TextLoader)
	return ok && tl.TextOnly()
}

func (r *Runner) store() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return storeState(r.cfg.StateDir, r.cfg.Sink, r.state)
}

func position(ctx context.Context, s sink.Sink) (sink.Position, error) {
	if ps, ok := s.(sink.PositionStore); ok {
		p, err := ps.Position(ctx)
		if err != nil {
			return p, fmt.Errorf("snapshot: read sink position: %w", err)
		}
		return p, nil
	}
	return sink.Position{}, nil
}

// workerSinks are the copy workers' sinks, opened in the background.
type workerSinks struct {
	sinks  []sink.Sink // [0] is the first sink, not owned
	cancel context.CancelFunc
	g      *errgroup.Group
}

// openSinks opens, in the background, one sink per copy worker after the
// first when first bulk-loads (each worker loads through its own target
// connection); the others share first.
func (r *Runner) openSinks(ctx context.Context, first sink.Sink) *workerSinks {
	octx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(octx)
	ws := &workerSinks{sinks: []sink.Sink{first}, cancel: cancel, g: g}
	if _, bulk := first.(sink.BulkLoader); !bulk {
		return ws
	}
	ws.sinks = append(ws.sinks, make([]sink.Sink, r.cfg.Parallelism-1)...)
	for i := 1; i < len(ws.sinks); i++ {
		g.Go(func() error {
			s, err := r.cfg.Open(gctx)
			if err != nil {
				return fmt.Errorf("snapshot: open sink %s: %w", r.cfg.Sink, err)
			}
			ws.sinks[i] = s
			if _, ok := s.(sink.BulkLoader); !ok {
				return fmt.Errorf("snapshot: sink %s lost its bulk loader", r.cfg.Sink)
			}
			return nil
		})
	}
	return ws
}

// wait returns the sinks once all are open.
func (ws *workerSinks) wait() ([]sink.Sink, error) {
	if err := ws.g.Wait(); err != nil {
		return nil, err
	}
	return ws.sinks, nil
}

// close stops the opening and closes the sinks opened.
func (ws *workerSinks) close(ctx context.Context) {
	ws.cancel()
	_ = ws.g.Wait()
	for _, s := range ws.sinks[1:] {
		if s != nil {
			s.Close(context.WithoutCancel(ctx))
		}
	}
}
