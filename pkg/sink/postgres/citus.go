package postgres

import (
	"slices"

	"github.com/cdcd-io/cdcd/pkg/schema"
)

// CitusConfig tunes FlavorCitus. The zero value distributes every table
// on its first primary-key column, in Citus's default colocation group,
// except tables estimated at ReferenceMaxRows rows or fewer, which become
// reference tables.
type CitusConfig struct {
	// Distribution maps a target table ("schema.table") to its
	// distribution column, which must be one of the table's primary-key
	// columns (Citus requires the key to include it). Default: the first
	// primary-key column.
	Distribution map[string]string
	// Reference lists target tables to create as reference tables
	// (replicated to every node). Default none besides the small ones.
	Reference []string
	// ReferenceMaxRows makes tables without a Distribution entry whose
	// source estimate is at most this many rows reference tables; a
	// negative value never does. Default 10000.
	ReferenceMaxRows int64
	// ColocateWith maps a target table to the distributed table it is
	// colocated with (its shards live beside that table's, so joins on the
	// distribution column stay on one node). Default: Citus's default
	// group, which colocates tables whose distribution columns have one
	// type.
	ColocateWith map[string]string
}

// defaultReferenceMaxRows is CitusConfig.ReferenceMaxRows's default.
const defaultReferenceMaxRows = 10000

// citusPlacement says how schema creation distributes table t.
func (s *Sink) citusPlacement(t *schema.Table) schema.CitusPlacement {
	c := s.cfg.Citus
	name := t.Target.String()
	if slices.Contains(c.Reference, name) {
		return schema.CitusPlacement{Reference: true}
	}
	p := schema.CitusPlacement{Column: c.Distribution[name], ColocateWith: c.ColocateWith[name]}
	if p.Column != "" {
		return p
	}
	limit := c.ReferenceMaxRows
	if limit == 0 {
		limit = defaultReferenceMaxRows
	}
	// reltuples is -1 for a table never analyzed: its size is unknown.
	if limit > 0 && t.Rows >= 0 && t.Rows <= limit && p.ColocateWith == "" {
		return schema.CitusPlacement{Reference: true}
	}
	return p
}
