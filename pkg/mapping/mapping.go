// Package mapping is cdcd's selective migration and transformation: which
// source tables are replicated (include / exclude patterns), under which
// target schema and name (GoldenGate's MAP … TARGET …), with which columns
// (exclude, rename: COLMAP), and which rows (a WHERE filter).
//
// The same Map drives the snapshot (table list, COPY column lists, WHERE)
// and the stream (the Sink decorator rewrites relations and rows between
// the trail and every sink). A row filter on the stream is a publication
// row filter on the source (PostgreSQL 15+), set up by the snapshot package.
package mapping

import (
	"fmt"
	"path"
	"strings"
)

// Config is the selection and mapping. The zero value replicates every
// table unchanged.
type Config struct {
	// Include lists "schema.table" patterns (path.Match syntax: * ? [..])
	// of the tables to replicate. Default: every table.
	Include []string
	// Exclude lists patterns of tables not to replicate, even if included.
	// Default none.
	Exclude []string
	// Tables maps single tables. Default none.
	Tables []Table
}

// Table maps one source table.
type Table struct {
	// From is the source table, "schema.table". Required.
	From string
	// To is the target table, "schema.table" (or "table": same schema).
	// Default: the source's name.
	To string
	// ExcludeColumns are source columns not to replicate. Key columns
	// cannot be excluded.
	ExcludeColumns []string
	// RenameColumns maps source column names to target names.
	RenameColumns map[string]string
	// Where is an SQL row filter over the source's columns: only rows for
	// which it is true are replicated (publication row filter, PG15+).
	Where string
}

// Map is a compiled Config. Safe for concurrent use.
type Map struct {
	cfg    Config
	tables map[string]*Table // by From
}

// New validates cfg.
func New(cfg Config) (*Map, error) {
	m := &Map{cfg: cfg, tables: map[string]*Table{}}
	for _, p := range append(append([]string{}, cfg.Include...), cfg.Exclude...) {
		if _, err := path.Match(p, "x.y"); err != nil || !strings.Contains(p, ".") {
			return nil, fmt.Errorf("table pattern %q: want schema.table with * ? [..] wildcards", p)
		}
	}
	targets := map[string]string{}
	for i := range cfg.Tables {
		t := &cfg.Tables[i]
		if s, n, ok := split(t.From); !ok || s == "" || n == "" {
			return nil, fmt.Errorf("mappings[%d].from %q: want schema.table", i, t.From)
		}
		if m.tables[t.From] != nil {
			return nil, fmt.Errorf("mappings[%d].from %q is mapped twice", i, t.From)
		}
		m.tables[t.From] = t
		for _, c := range t.ExcludeColumns {
			if _, ok := t.RenameColumns[c]; ok {
				return nil, fmt.Errorf("mappings[%d]: column %s is both excluded and renamed", i, c)
			}
		}
		tgt := m.target(t.From)
		if other, ok := targets[tgt]; ok {
			return nil, fmt.Errorf("mappings[%d]: %s and %s both map to %s", i, other, t.From, tgt)
		}
		targets[tgt] = t.From
	}
	return m, nil
}

func split(name string) (schema, table string, ok bool) {
	return strings.Cut(name, ".")
}

// Includes reports whether the source table is replicated.
func (m *Map) Includes(schema, table string) bool {
	name := schema + "." + table
	if len(m.cfg.Include) > 0 && !matchAny(m.cfg.Include, name) {
		return false
	}
	return !matchAny(m.cfg.Exclude, name)
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

func (m *Map) target(from string) string {
	s, _, _ := split(from)
	t := m.tables[from]
	if t == nil || t.To == "" {
		return from
	}
	if ts, tn, ok := split(t.To); ok {
		return ts + "." + tn
	}
	return s + "." + t.To
}

// Target returns the target schema and table of a source table.
func (m *Map) Target(schema, table string) (string, string) {
	s, n, _ := split(m.target(schema + "." + table))
	return s, n
}

// Column returns the target name of a source column, and false when the
// column is excluded.
func (m *Map) Column(schema, table, column string) (string, bool) {
	t := m.tables[schema+"."+table]
	if t == nil {
		return column, true
	}
	for _, c := range t.ExcludeColumns {
		if c == column {
			return "", false
		}
	}
	if n, ok := t.RenameColumns[column]; ok {
		return n, true
	}
	return column, true
}

// Where returns the row filter of a source table, "" when none.
func (m *Map) Where(schema, table string) string {
	if t := m.tables[schema+"."+table]; t != nil {
		return t.Where
	}
	return ""
}

// HasWhere reports whether any table has a row filter.
func (m *Map) HasWhere() bool {
	for _, t := range m.tables {
		if t.Where != "" {
			return true
		}
	}
	return false
}

// Identity reports whether the map replicates every table unchanged, so the
// stream needs no rewriting.
func (m *Map) Identity() bool {
	return len(m.cfg.Include) == 0 && len(m.cfg.Exclude) == 0 && len(m.tables) == 0
}

// Tables returns the mapped tables' configs.
func (m *Map) Tables() []Table { return m.cfg.Tables }
