package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/mapping"
)

// MarkerPrefix is the prefix of the logical message verify commits after
// its snapshot, so every held sink meets a transaction past the boundary.
const MarkerPrefix = "cdcd.verify"

// ErrMismatch is returned (wrapped) by Run when a table differs.
var ErrMismatch = errors.New("tables differ")

// Config configures a verification. The zero value of every field means
// its default.
type Config struct {
	// SourceDSN is the source primary's connection string. Required.
	SourceDSN string
	// Publication: when it exists, its tables are compared. Default "cdcd";
	// when it does not exist, every ordinary table outside the system
	// schemas and schema cdcd.
	Publication string
	// Slot prefixes the temporary slot that exports the source snapshot.
	// Default "cdcd".
	Slot string
	// Targets are the PostgreSQL sinks to compare. Required: at least one.
	Targets []Target
	// Map is the pipeline's table mapping. Default: identity.
	Map *mapping.Map
	// Tables limits the comparison to tables matching these patterns
	// ("schema.table" or "table", path.Match wildcards). Default all.
	Tables []string
	// Parallel is the number of ranges compared at once per target.
	// Default 4.
	Parallel int
	// RangeRows is the size of the key ranges tables are split into.
	// Default 100000.
	RangeRows int64
	// LeafRows: a differing range of at most this many rows is compared
	// row by row; larger ones are split first. Default 10000.
	LeafRows int64
	// MaxKeys is how many differing keys are named per table and kind.
	// Default 10.
	MaxKeys int
	// Counts compares row counts per range only, without checksums: a
	// faster, weaker check (cdcd cutover --verify=counts). Default false.
	Counts bool
	// Repair re-copies the differing ranges from the source snapshot into
	// the target. Default false.
	Repair bool
	// Daemon is the running cdcd's HTTP endpoint (http://127.0.0.1:8432):
	// the sinks are held at the snapshot's position (exact under load).
	// Default "": nothing applies to the targets; compare as they are.
	Daemon string
	// HoldTimeout bounds how long a sink may stay held (the daemon
	// releases it after that even if verify died). Default 5m.
	HoldTimeout time.Duration
	// Logger receives progress logs. Default: discard.
	Logger *slog.Logger
}

// Target is one PostgreSQL sink.
type Target struct {
	// Name is the sink's name in the configuration. Required.
	Name string
	// DSN is its connection string. Required.
	DSN string
	// Snapshot is an exported snapshot (pg_export_snapshot) to read the
	// target in, whose transaction the caller keeps open: the target as it
	// was at some earlier moment (cdcd cutover --verify=after). Default:
	// the target as it is (static) or as held (Daemon).
	Snapshot string
}

func (c Config) defaults() Config {
	if c.Publication == "" {
		c.Publication = "cdcd"
	}
	if c.Slot == "" {
		c.Slot = "cdcd"
	}
	if c.Parallel <= 0 {
		c.Parallel = 4
	}
	if c.RangeRows <= 0 {
		c.RangeRows = 100000
	}
	if c.LeafRows <= 0 {
		c.LeafRows = 10000
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = 10
	}
	if c.HoldTimeout <= 0 {
		c.HoldTimeout = 5 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Result is the outcome of a verification.
type Result struct {
	// Mode is "held" (sinks held at the snapshot's position by the running
	// daemon) or "static" (no daemon: targets compared as they are).
	Mode string `json:"mode"`
	// LSN is the source snapshot's position.
	LSN string `json:"lsn"`
	// Targets holds one entry per target.
	Targets []TargetResult `json:"targets"`
	// Match reports that every table of every target matched.
	Match bool `json:"match"`
	// Seconds is the whole run's duration.
	Seconds float64 `json:"seconds"`
}

// TargetResult is one target's outcome.
type TargetResult struct {
	// Sink is the sink's name.
	Sink string `json:"sink"`
	// Position is the end LSN of the last transaction the target holds
	// (held mode), as the sink reported it.
	Position string `json:"position,omitempty"`
	// Tables holds one entry per compared table.
	Tables []TableResult `json:"tables"`
}

// TableResult is one table's outcome on one target.
type TableResult struct {
	// Source and Target name the table on each side.
	Source string `json:"source"`
	Target string `json:"target"`
	// Rows and TargetRows are the row counts on each side (through the
	// row filter on the source).
	Rows       int64 `json:"rows"`
	TargetRows int64 `json:"target_rows"`
	// Ranges is the number of key ranges compared.
	Ranges int `json:"ranges"`
	// Match reports that count and checksum agree in every range.
	Match bool `json:"match"`
	// Missing, Extra and Changed name differing keys (at most MaxKeys
	// each): rows missing on the target, extra on the target, and present
	// on both with other values. The counts count them all.
	Missing      []string `json:"missing,omitempty"`
	Extra        []string `json:"extra,omitempty"`
	Changed      []string `json:"changed,omitempty"`
	MissingCount int64    `json:"missing_count,omitempty"`
	ExtraCount   int64    `json:"extra_count,omitempty"`
	ChangedCount int64    `json:"changed_count,omitempty"`
	// Repaired is the number of differing ranges re-copied (Repair).
	Repaired int `json:"repaired,omitempty"`
	// Error is why the table could not be compared ("" when it was).
	Error string `json:"error,omitempty"`
	// Seconds is the table's comparison time.
	Seconds float64 `json:"seconds"`
}

// Run verifies every included table on every target. Its error wraps
// ErrMismatch when a table differs; other errors mean the comparison could
// not be made.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.defaults()
	if cfg.SourceDSN == "" {
		return nil, errors.New("verify: the source dsn is empty")
	}
	if len(cfg.Targets) == 0 {
		return nil, errors.New("verify: no postgres sink to compare (verify compares postgres sinks only)")
	}
	if cfg.Map == nil {
		m, err := mapping.New(mapping.Config{})
		if err != nil {
			return nil, err
		}
		cfg.Map = m
	}
	start := time.Now()
	v := &run{cfg: cfg, log: cfg.Logger}
	defer v.close()
	res, err := v.run(ctx)
	if res != nil {
		res.Seconds = time.Since(start).Seconds()
	}
	if err == nil && !res.Match {
		err = fmt.Errorf("verify: %w", ErrMismatch)
	}
	return res, err
}

// run is one verification in progress.
type run struct {
	cfg     Config
	log     *slog.Logger
	src     *pgx.Conn   // coordinator, holds the source snapshot open
	dst     []*pgx.Conn // per target, holds the target snapshot open
	srcSnap string
	dstSnap []string
	held    []string // sinks held
	d       daemon
}

func (v *run) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v.releaseHolds(ctx)
	if v.src != nil {
		v.src.Close(ctx)
	}
	for _, c := range v.dst {
		if c != nil {
			c.Close(ctx)
		}
	}
}

func (v *run) releaseHolds(ctx context.Context) {
	for _, name := range v.held {
		if err := v.d.release(ctx, name); err != nil {
			v.log.Warn("release hold (it times out by itself)", "sink", name, "err", err)
		}
	}
	v.held = nil
}

func (v *run) run(ctx context.Context) (*Result, error) {
	res := &Result{Mode: "static"}
	var err error
	if v.src, err = connect(ctx, v.cfg.SourceDSN, "source"); err != nil {
		return nil, err
	}
	v.dst = make([]*pgx.Conn, len(v.cfg.Targets))
	v.dstSnap = make([]string, len(v.cfg.Targets))
	for i, t := range v.cfg.Targets {
		if v.dst[i], err = connect(ctx, t.DSN, "target "+t.Name); err != nil {
			return nil, err
		}
	}
	positions := make([]change.LSN, len(v.cfg.Targets))
	var lsn change.LSN
	if v.cfg.Daemon != "" {
		res.Mode = "held"
		if lsn, positions, err = v.pinHeld(ctx); err != nil {
			return nil, err
		}
	} else if lsn, err = v.pinStatic(ctx); err != nil {
		return nil, err
	}
	res.LSN = lsn.String()
	if !v.cfg.Repair {
		// Both sides are pinned by exported snapshots: replication goes
		// on while they are read.
		v.releaseHolds(ctx)
	}
	tables, err := listTables(ctx, v.src, v.cfg.Publication, v.cfg.Map, v.cfg.Tables)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		t.counts = v.cfg.Counts
	}
	if len(tables) == 0 {
		return nil, errors.New("verify: no table to compare (check tables.include/exclude, the publication and --tables)")
	}
	ranges := make([][]krange, len(tables))
	for i, t := range tables {
		if ranges[i], err = t.ranges(ctx, v.src, v.cfg.RangeRows); err != nil {
			return nil, err
		}
	}
	res.Match = true
	for i, t := range v.cfg.Targets {
		tr, err := v.target(ctx, i, tables, ranges)
		if err != nil {
			return nil, err
		}
		if positions[i] != 0 {
			tr.Position = positions[i].String()
		}
		for _, x := range tr.Tables {
			res.Match = res.Match && x.Match
		}
		tr.Sink = t.Name
		res.Targets = append(res.Targets, *tr)
	}
	return res, nil
}

// target compares every table on target i with Parallel workers, each with
// a source and a target connection in the pinned snapshots.
func (v *run) target(ctx context.Context, i int, tables []*table, ranges [][]krange) (*TargetResult, error) {
	tgt := v.cfg.Targets[i]
	type job struct {
		t int
		r krange
	}
	type acc struct {
		res     TableResult
		d       diff
		started time.Time
		left    int
	}
	accs := make([]*acc, len(tables))
	var jobs []job
	for ti, t := range tables {
		a := &acc{res: TableResult{Source: t.Source.String(), Target: t.Target.String(), Ranges: len(ranges[ti]), Match: true},
			d: diff{maxKeys: v.cfg.MaxKeys}, left: len(ranges[ti])}
		accs[ti] = a
		var exists bool
		if err := v.dst[i].QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", t.dstName).Scan(&exists); err != nil {
			return nil, fmt.Errorf("target %s: look up %s: %w", tgt.Name, t.Target, err)
		}
		if !exists {
			a.res.Match = false
			a.res.Error = fmt.Sprintf("table %s does not exist on target %s", t.Target, tgt.Name)
			a.res.Ranges = 0
			continue
		}
		for _, r := range ranges[ti] {
			jobs = append(jobs, job{ti, r})
		}
	}
	var mu sync.Mutex
	queue := make(chan job)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(queue)
		for _, j := range jobs {
			select {
			case queue <- j:
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	for range min(v.cfg.Parallel, max(len(jobs), 1)) {
		g.Go(func() error {
			p, err := v.pair(gctx, i)
			if err != nil {
				return err
			}
			defer p.src.Close(context.Background())
			defer p.dst.Close(context.Background())
			var fix *pgx.Conn // repairs, outside the snapshot
			defer func() {
				if fix != nil {
					fix.Close(context.Background())
				}
			}()
			for j := range queue {
				t, a := tables[j.t], accs[j.t]
				mu.Lock()
				if a.started.IsZero() {
					a.started = time.Now()
				}
				mu.Unlock()
				sa, sb, err := p.sums(gctx, t, j.r)
				if err != nil {
					return fmt.Errorf("target %s: %w", tgt.Name, err)
				}
				var d diff
				d.maxKeys = v.cfg.MaxKeys
				if err := p.compare(gctx, t, j.r, sa, sb, v.cfg.LeafRows, &d); err != nil {
					return fmt.Errorf("target %s: %w", tgt.Name, err)
				}
				repaired := 0
				if v.cfg.Repair && len(d.leaves) > 0 {
					if fix == nil {
						if fix, err = connect(gctx, tgt.DSN, "target "+tgt.Name); err != nil {
							return err
						}
					}
					for _, r := range d.leaves {
						if err := repair(gctx, p.src, fix, t, r); err != nil {
							return fmt.Errorf("target %s: %w", tgt.Name, err)
						}
						repaired++
					}
				}
				mu.Lock()
				a.res.Rows += sa.rows
				a.res.TargetRows += sb.rows
				a.res.Repaired += repaired
				a.d.merge(&d)
				a.left--
				if a.left == 0 {
					a.res.Seconds = time.Since(a.started).Seconds()
				}
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := &TargetResult{}
	for _, a := range accs {
		r := a.res
		d := a.d
		r.Missing, r.Extra, r.Changed = d.missing, d.extra, d.change
		r.MissingCount, r.ExtraCount, r.ChangedCount = d.nMissing, d.nExtra, d.nChg
		if len(d.leaves) > 0 || d.nMissing+d.nExtra+d.nChg > 0 {
			r.Match = false
		}
		out.Tables = append(out.Tables, r)
	}
	return out, nil
}

func (d *diff) merge(o *diff) {
	for _, k := range o.missing {
		if len(d.missing) < d.maxKeys {
			d.missing = append(d.missing, k)
		}
	}
	for _, k := range o.extra {
		if len(d.extra) < d.maxKeys {
			d.extra = append(d.extra, k)
		}
	}
	for _, k := range o.change {
		if len(d.change) < d.maxKeys {
			d.change = append(d.change, k)
		}
	}
	d.nMissing += o.nMissing
	d.nExtra += o.nExtra
	d.nChg += o.nChg
	d.leaves = append(d.leaves, o.leaves...)
}

// pair opens a worker's connections in the pinned snapshots.
func (v *run) pair(ctx context.Context, i int) (pair, error) {
	tgt := v.cfg.Targets[i]
	src, err := connect(ctx, v.cfg.SourceDSN, "source")
	if err != nil {
		return pair{}, err
	}
	if err := beginSnapshot(ctx, src, v.srcSnap); err != nil {
		src.Close(context.Background())
		return pair{}, fmt.Errorf("source: %w", err)
	}
	dst, err := connect(ctx, tgt.DSN, "target "+tgt.Name)
	if err != nil {
		src.Close(context.Background())
		return pair{}, err
	}
	if err := beginSnapshot(ctx, dst, v.dstSnap[i]); err != nil {
		src.Close(context.Background())
		dst.Close(context.Background())
		return pair{}, fmt.Errorf("target %s: %w", tgt.Name, err)
	}
	return pair{src: src, dst: dst}, nil
}
