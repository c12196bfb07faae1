package snapshot

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/mapping"
	"github.com/cdcd-io/cdcd/pkg/schema"
)

// listTables returns the source tables the map includes — the
// publication's, or list's when set — mapped, largest first.
func listTables(ctx context.Context, q *pgx.Conn, publication string, list func(context.Context, *pgx.Conn) ([]schema.Name, error), m *mapping.Map) ([]*schema.Table, error) {
	type rel struct {
		oid         uint32
		schema, rel string
	}
	var rels []rel
	if list != nil {
		names, err := list(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("list the source tables: %w", err)
		}
		for _, n := range names {
			if !m.Includes(n.Schema, n.Name) {
				continue
			}
			r := rel{schema: n.Schema, rel: n.Name}
			var kind string
			if err := q.QueryRow(ctx, "SELECT oid, relkind::text FROM pg_class WHERE oid = $1::regclass",
				pgx.Identifier{n.Schema, n.Name}.Sanitize()).Scan(&r.oid, &kind); err != nil {
				return nil, fmt.Errorf("look up table %s.%s: %w", n.Schema, n.Name, err)
			}
			if kind == "r" { // a partitioned table's rows are its partitions'
				rels = append(rels, r)
			}
		}
	} else {
		rows, err := q.Query(ctx, `
SELECT c.oid, n.nspname, c.relname
FROM pg_catalog.pg_publication_tables pt
JOIN pg_catalog.pg_namespace n ON n.nspname = pt.schemaname
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
WHERE pt.pubname = $1 AND c.relkind = 'r'
ORDER BY n.nspname, c.relname`, publication)
		if err != nil {
			return nil, fmt.Errorf("list the tables of publication %s: %w", publication, err)
		}
		for rows.Next() {
			var r rel
			if err := rows.Scan(&r.oid, &r.schema, &r.rel); err != nil {
				rows.Close()
				return nil, err
			}
			if m.Includes(r.schema, r.rel) {
				rels = append(rels, r)
			}
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("list the tables of publication %s: %w", publication, err)
		}
	}
	var out []*schema.Table
	for _, r := range rels {
		t, err := schema.Read(ctx, q, r.oid)
		if err != nil {
			return nil, err
		}
		ts, tn := m.Target(r.schema, r.rel)
		t, err = t.Map(schema.Name{Schema: ts, Name: tn}, func(col string) (string, bool) {
			return m.Column(r.schema, r.rel, col)
		})
		if err != nil {
			return nil, err
		}
		if t.Rows <= 0 {
			// Never analyzed (or empty): count under the snapshot.
			if err := q.QueryRow(ctx, "SELECT count(*) FROM ONLY "+sourceName(t)).Scan(&t.Rows); err != nil {
				return nil, fmt.Errorf("count rows of %s: %w", t.Source, err)
			}
		}
		out = append(out, t)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Rows > out[j].Rows })
	return out, nil
}

func sourceName(t *schema.Table) string {
	return pgx.Identifier{t.Source.Schema, t.Source.Name}.Sanitize()
}

// sourceKey returns the source names and types of t's key columns.
func sourceKey(t *schema.Table) (names, types []string) {
	for _, k := range t.PrimaryKey {
		c := t.Columns[t.Column(k)]
		names = append(names, c.Source)
		types = append(types, c.Type)
	}
	return names, types
}

// chunks splits a table with a primary key into key ranges of about
// chunkRows rows: arithmetic over min..max for a single integer key, else
// quantiles of a row sample. A keyless table is split into ranges of heap
// pages when pageRanges is set (see pageChunks), else it is one chunk, as
// are small tables.
func chunks(ctx context.Context, q *pgx.Conn, t *schema.Table, chunkRows int64, pageRanges bool) ([]Chunk, error) {
	if t.Rows < 2*chunkRows {
		return []Chunk{{}}, nil
	}
	if len(t.PrimaryKey) == 0 {
		if pageRanges {
			return pageChunks(ctx, q, t, chunkRows)
		}
		return []Chunk{{}}, nil
	}
	n := (t.Rows + chunkRows - 1) / chunkRows
	names, types := sourceKey(t)
	bounds, ok, err := schema.IntKeyBounds(ctx, q, t, sourceName(t), pgx.Identifier{names[0]}.Sanitize(), n)
	if err != nil {
		return nil, fmt.Errorf("key range of %s: %w", t.Source, err)
	}
	if ok {
		out := make([]Chunk, 0, len(bounds)+1)
		var prev []string
		for _, b := range bounds {
			out = append(out, Chunk{Lo: prev, Hi: b})
			prev = b
		}
		return append(out, Chunk{Lo: prev}), nil
	}
	// A Bernoulli sample of about 100 rows per chunk, sorted by the key.
	pct := min(100, float64(100*n)*100/float64(t.Rows))
	// Qualified (t.col): ORDER BY a bare name would sort by the ::text
	// output column of that name — '888' after '2331' — and give ranges
	// that overlap.
	sel := make([]string, len(names))
	for i, c := range names {
		sel[i] = "t." + pgx.Identifier{c}.Sanitize()
	}
	texts := make([]string, len(names))
	for i, c := range sel {
		texts[i] = c + "::text"
	}
	rows, err := q.Query(ctx, fmt.Sprintf("SELECT %s FROM ONLY %s AS t TABLESAMPLE BERNOULLI (%g) ORDER BY %s",
		strings.Join(texts, ", "), sourceName(t), pct, strings.Join(sel, ", ")))
	if err != nil {
		return nil, fmt.Errorf("sample keys of %s: %w", t.Source, err)
	}
	var sample [][]string
	for rows.Next() {
		vals := make([]string, len(names))
		ptrs := make([]any, len(names))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			rows.Close()
			return nil, err
		}
		sample = append(sample, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sample keys of %s: %w", t.Source, err)
	}
	_ = types
	if int64(len(sample)) < n {
		return []Chunk{{}}, nil
	}
	var out []Chunk
	var prev []string
	for i := int64(1); i < n; i++ {
		b := sample[int64(len(sample))*i/n]
		if prev != nil && slicesEqual(prev, b) {
			continue
		}
		out = append(out, Chunk{Lo: prev, Hi: b})
		prev = b
	}
	return append(out, Chunk{Lo: prev}), nil
}

// pageChunks splits t into ranges of heap pages holding about chunkRows
// rows each, read with TID range scans (PostgreSQL 14+; older servers get
// one chunk). The last range is open-ended. Rows do not keep their pages
// across snapshots (an update writes a new version elsewhere), so such
// chunks are exact only under the snapshot they were planned in: a table
// split so is copied again whole when a copy resumes under a new one
// (Runner.restartTables). Only keyless tables, which resume so anyway,
// are split this way.
func pageChunks(ctx context.Context, q *pgx.Conn, t *schema.Table, chunkRows int64) ([]Chunk, error) {
	var version, pages int64
	if err := q.QueryRow(ctx, "SELECT current_setting('server_version_num')::int, pg_relation_size($1::regclass) / current_setting('block_size')::int",
		sourceName(t)).Scan(&version, &pages); err != nil {
		return nil, fmt.Errorf("size of %s: %w", t.Source, err)
	}
	n := (t.Rows + chunkRows - 1) / chunkRows
	if version < 140000 || pages < 2*n {
		return []Chunk{{}}, nil
	}
	per := (pages + n - 1) / n
	var out []Chunk
	for from := int64(0); from < pages; from += per {
		c := Chunk{FromPage: from, ToPage: from + per, Pages: true}
		if c.ToPage >= pages {
			c.ToPage = 0 // to the end: pages added since are the last chunk's
		}
		out = append(out, c)
	}
	return out, nil
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// copySQL is the COPY … TO STDOUT statement of chunk c of t.
func copySQL(t *TableState, c Chunk, where string) string {
	tbl := t.Table
	cols := make([]string, len(tbl.Columns))
	for i, col := range tbl.Columns {
		cols[i] = pgx.Identifier{col.Source}.Sanitize()
	}
	var conds []string
	if c.Pages {
		if c.FromPage > 0 {
			conds = append(conds, fmt.Sprintf("ctid >= '(%d,0)'::tid", c.FromPage))
		}
		if c.ToPage > 0 {
			conds = append(conds, fmt.Sprintf("ctid < '(%d,0)'::tid", c.ToPage))
		}
	}
	if c.Lo != nil || c.Hi != nil {
		names, types := sourceKey(tbl)
		key := make([]string, len(names))
		for i, n := range names {
			key[i] = pgx.Identifier{n}.Sanitize()
		}
		row := "(" + strings.Join(key, ", ") + ")"
		if len(key) == 1 {
			row = key[0]
		}
		if c.Lo != nil {
			conds = append(conds, row+" >= "+literalRow(c.Lo, types))
		}
		if c.Hi != nil {
			conds = append(conds, row+" < "+literalRow(c.Hi, types))
		}
	}
	if where != "" {
		conds = append(conds, "("+where+")")
	}
	q := "SELECT " + strings.Join(cols, ", ") + " FROM ONLY " + sourceName(tbl)
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	s := "COPY (" + q + ") TO STDOUT"
	if t.Binary {
		s += " WITH (FORMAT binary)"
	}
	return s
}

// literalRow is (E'v1'::type1, …), or E'v'::type for one value.
func literalRow(vals, types []string) string {
	lits := make([]string, len(vals))
	for i, v := range vals {
		v = strings.ReplaceAll(v, `\`, `\\`)
		v = strings.ReplaceAll(v, `'`, `''`)
		lits[i] = "E'" + v + "'::" + types[i]
	}
	if len(lits) == 1 {
		return lits[0]
	}
	return "(" + strings.Join(lits, ", ") + ")"
}
