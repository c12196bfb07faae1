package postgres

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cdcd-io/cdcd/pkg/change"
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

// On Citus, a statement whose WHERE clause (or inserted row) fixes the
// distribution column runs on one shard, on one worker, without the
// coordinator planning a distributed join; the plain flavor's set-based
// statements (UPDATE … FROM unnest(…), DELETE … USING unnest(…), INSERT …
// SELECT FROM unnest(…)) join a function result with the distributed
// table instead, which Citus must pull through the coordinator or reject.
// So the citus flavor turns each table's collapsed work into one statement
// per key, all sent in one pipelined round trip (pgx.Batch):
//
//	DELETE FROM s.t WHERE k = CAST($1::text AS integer)
//	INSERT INTO s.t AS t (k, v) OVERRIDING SYSTEM VALUE
//	VALUES (CAST($1::text AS integer), CAST($2::text AS text))
//	ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v
//	UPDATE s.t AS t SET v = CAST($2::text AS text) WHERE t.k = CAST($1::text AS integer)
//
// The distribution column is a primary-key column (schema creation and
// cdcd check make sure), so every statement names it. The key columns are
// never in a SET list, so the distribution column is never updated —
// which Citus forbids — except by a key change whose new row lacks an
// unchanged TOASTed value (a plan "move"); that fails on Citus when the
// distribution column changes.

// citusOps runs one keyed table's collapsed work as single-key statements.
func (s *Sink) citusOps(ctx context.Context, t *table, ops *tableOps) error {
	deletes, fresh, upserts, updates := split(ops)
	b, begins := s.newBatch()
	for _, r := range deletes {
		b.Queue(citusDeleteSQL(t), rowArgs(nil, r, t.keys)...)
	}
	all := allColumns(len(t.cols))
	for _, r := range append(fresh, upserts...) {
		b.Queue(citusUpsertSQL(t), rowArgs(nil, r, all)...)
	}
	for _, g := range updates {
		for _, r := range g.Rows {
			b.Queue(citusUpdateSQL(t, g.Cols), rowArgs(rowArgs(nil, r, t.keys), r, g.Cols)...)
		}
	}
	n := b.Len() - begins
	if n == 0 {
		return nil
	}
	s.statements += n
	br, err := s.sendBatch(ctx, b, begins)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("apply to %s (%d statements): %w", t.target, n, err)
	}
	return nil
}

// rowArgs appends the text values of row's columns cols.
func rowArgs(args []any, row change.Row, cols []int) []any {
	for _, c := range cols {
		args = append(args, textValue(row[c]))
	}
	return args
}

// param writes CAST($n::text AS typ).
func param(b *strings.Builder, n int, typ string) {
	b.WriteString("CAST($")
	b.WriteString(strconv.Itoa(n))
	b.WriteString("::text AS ")
	b.WriteString(typ)
	b.WriteString(")")
}

// keyWhere writes t.k1 = CAST($first::text AS …) AND … for t's key.
func keyWhere(b *strings.Builder, t *table, first int) {
	for i, k := range t.keys {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString("t.")
		b.WriteString(t.cols[k].name)
		b.WriteString(" = ")
		param(b, first+i, t.cols[k].typ)
	}
}

// citusDeleteSQL deletes the row of one key ($1… the key columns).
func citusDeleteSQL(t *table) string {
	var b strings.Builder
	b.WriteString("DELETE FROM ")
	b.WriteString(t.target.sql())
	b.WriteString(" AS t WHERE ")
	keyWhere(&b, t, 1)
	return b.String()
}

// citusUpsertSQL upserts one full row ($1… every column in order).
func citusUpsertSQL(t *table) string {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(t.target.sql())
	b.WriteString(" AS t (")
	for i, c := range t.cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.name)
	}
	b.WriteString(") OVERRIDING SYSTEM VALUE VALUES (")
	for i, c := range t.cols {
		if i > 0 {
			b.WriteString(", ")
		}
		param(&b, i+1, c.typ)
	}
	b.WriteString(")")
	onConflict(&b, t)
	return b.String()
}

// citusUpdateSQL sets columns set of one row ($1… the key columns, then
// the set columns).
func citusUpdateSQL(t *table, set []int) string {
	var b strings.Builder
	b.WriteString("UPDATE ")
	b.WriteString(t.target.sql())
	b.WriteString(" AS t SET ")
	for i, col := range set {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(t.cols[col].name)
		b.WriteString(" = ")
		param(&b, len(t.keys)+i+1, t.cols[col].typ)
	}
	b.WriteString(" WHERE ")
	keyWhere(&b, t, 1)
	return b.String()
}
