package config

import (
	"errors"
	"fmt"

	"github.com/cdcd-io/cdcd/pkg/mapping"
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

// mappingConfig is the `tables:` and `mappings:` sections as the library's
// options.
func (f *File) mappingConfig() mapping.Config {
	mc := mapping.Config{Include: f.Tables.Include, Exclude: f.Tables.Exclude}
	for _, m := range f.Mappings {
		mc.Tables = append(mc.Tables, mapping.Table{From: m.From, To: m.To, ExcludeColumns: m.Columns.Exclude,
			RenameColumns: m.Columns.Rename, Where: m.Where})
	}
	return mc
}

// Map returns the compiled table selection and mappings.
func (f *File) Map() (*mapping.Map, error) { return mapping.New(f.mappingConfig()) }

func (f *File) validateSnapshot() error {
	switch f.Snapshot.Mode {
	case "", snapshot.ModeNever, snapshot.ModeInitial, snapshot.ModeAlways:
	default:
		return f.errAt("snapshot.mode", fmt.Errorf("%q: use initial, always or never", f.Snapshot.Mode))
	}
	if f.Snapshot.Parallelism < 0 {
		return f.errAt("snapshot.parallelism", errors.New("must not be negative"))
	}
	if f.Snapshot.ChunkRows < 0 {
		return f.errAt("snapshot.chunk_rows", errors.New("must not be negative"))
	}
	if _, err := f.Map(); err != nil {
		return f.errAt("mappings", err)
	}
	return nil
}
