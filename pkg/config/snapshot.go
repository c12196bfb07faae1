package config

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/term"

	"github.com/cdcd-io/cdcd/pkg/mapping"
	"github.com/cdcd-io/cdcd/pkg/pipeline"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/snapshot"
)

// Snapshot is the `snapshot:` section.
type Snapshot struct {
	// Mode is initial (copy once, before a new sink's first change),
	// always (copy again on every start) or never. Default never.
	Mode string `yaml:"mode"`
	// Parallelism is the number of copy workers per sink. Default 4.
	Parallelism int `yaml:"parallelism"`
	// ChunkRows is the size of the key ranges large tables are split into.
	// Default 250000.
	ChunkRows int64 `yaml:"chunk_rows"`
}

// SchemaSection is the `schema:` section.
type SchemaSection struct {
	// Create creates missing target schemas, tables and their enum and
	// domain types before the snapshot (PostgreSQL sinks). Default false.
	Create bool `yaml:"create"`
}

// Tables is the `tables:` section: which source tables are replicated.
type Tables struct {
	// Include lists schema.table patterns (* ? [..]). Default: all.
	Include []string `yaml:"include"`
	// Exclude lists patterns left out even if included. Default none.
	Exclude []string `yaml:"exclude"`
}

// Mapping is one entry of the `mappings:` list.
type Mapping struct {
	// From is the source table, schema.table. Required.
	From string `yaml:"from"`
	// To is the target table, schema.table or table. Default: From.
	To string `yaml:"to"`
	// Columns excludes and renames columns.
	Columns MappingColumns `yaml:"columns"`
	// Where is an SQL row filter over the source columns (PostgreSQL 15+
	// publication row filter). Default none.
	Where string `yaml:"where"`
}

// MappingColumns is a mapping's `columns:` section.
type MappingColumns struct {
	// Exclude lists source columns not replicated.
	Exclude []string `yaml:"exclude"`
	// Rename maps source column names to target names.
	Rename map[string]string `yaml:"rename"`
}

// Map returns the compiled table selection and mappings.
func (f *File) Map() (*mapping.Map, error) {
	mc := mapping.Config{Include: f.Tables.Include, Exclude: f.Tables.Exclude}
	for _, m := range f.Mappings {
		mc.Tables = append(mc.Tables, mapping.Table{From: m.From, To: m.To, ExcludeColumns: m.Columns.Exclude,
			RenameColumns: m.Columns.Rename, Where: m.Where})
	}
	return mapping.New(mc)
}

func (f *File) validateSnapshot() error {
	switch f.Snapshot.Mode {
	case "", snapshot.ModeNever, snapshot.ModeInitial, snapshot.ModeAlways:
	default:
		return fmt.Errorf("snapshot.mode %q: use initial, always or never", f.Snapshot.Mode)
	}
	if f.Snapshot.Parallelism < 0 || f.Snapshot.ChunkRows < 0 {
		return fmt.Errorf("snapshot.parallelism and snapshot.chunk_rows must not be negative")
	}
	if _, err := f.Map(); err != nil {
		return err
	}
	return nil
}

// wireSnapshot adds the snapshot runners, the stream's mapping decorator and
// the publication set-up to a pipeline configuration.
func (f *File) wireSnapshot(pc *pipeline.Config, log *slog.Logger) {
	m, err := f.Map()
	if err != nil {
		return // validate rejected it already
	}
	cc := f.CaptureConfig()
	pc.Setup = func(ctx context.Context) error {
		return snapshot.PreparePublication(ctx, cc.Source, m, log)
	}
	var bar = os.Stderr
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		bar = nil
	}
	for i := range pc.Sinks {
		s := &pc.Sinks[i]
		raw := s.Open
		var runner *snapshot.Runner
		if f.Snapshot.Mode != "" && f.Snapshot.Mode != snapshot.ModeNever {
			sc := snapshot.Config{
				Mode: f.Snapshot.Mode, Parallelism: f.Snapshot.Parallelism, ChunkRows: f.Snapshot.ChunkRows,
				CreateSchema: f.Schema.Create, Source: cc.Source, Map: m, StateDir: f.Trail.Dir,
				Sink: s.Apply.Name, Open: raw, Logger: log,
			}
			if bar != nil {
				sc.Bar = bar
			}
			if runner, err = snapshot.New(sc); err != nil {
				continue
			}
			s.Snapshot = runner
		}
		if m.Identity() && runner == nil {
			continue
		}
		name := s.Apply.Name
		trailDir := f.Trail.Dir
		s.Open = func(ctx context.Context) (sink.Sink, error) {
			inner, err := raw(ctx)
			if err != nil {
				return nil, err
			}
			st, err := snapshot.LoadState(trailDir, name)
			if err != nil {
				inner.Close(ctx)
				return nil, err
			}
			skip, err := st.SkipLSNs()
			if err != nil {
				inner.Close(ctx)
				return nil, err
			}
			return mapping.Wrap(inner, m, skip), nil
		}
	}
}
