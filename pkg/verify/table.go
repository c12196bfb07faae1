package verify

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/mapping"
	"github.com/cdcd-io/cdcd/pkg/schema"
)

// table is one compared table with its SQL on each side.
type table struct {
	*schema.Table
	where string // the source's row filter, "" when none
	// srcCols and dstCols are the compared columns, quoted, in the same
	// order on both sides; srcKey and dstKey the key columns.
	srcCols, dstCols []string
	srcKey, dstKey   []string
	keyTypes         []string
	keyNames         []string // target key names, for messages
	srcName, dstName string   // quoted, qualified
	counts           bool     // compare counts only
}

// listTables reads the included tables on the source (in its snapshot):
// the publication's when it exists, else every ordinary table outside the
// system schemas and schema cdcd; only patterns when given.
func listTables(ctx context.Context, q *pgx.Conn, publication string, m *mapping.Map, patterns []string) ([]*table, error) {
	var pub bool
	if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = $1)", publication).Scan(&pub); err != nil {
		return nil, fmt.Errorf("look up publication %s: %w", publication, err)
	}
	sql := `SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'cdcd') AND n.nspname NOT LIKE 'pg\_%'
ORDER BY n.nspname, c.relname`
	args := []any{}
	if pub {
		sql = `SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_publication_tables pt
JOIN pg_catalog.pg_namespace n ON n.nspname = pt.schemaname
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
WHERE pt.pubname = $1 AND c.relkind = 'r' AND n.nspname <> 'cdcd' ORDER BY n.nspname, c.relname`
		args = append(args, publication)
	}
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("list source tables: %w", err)
	}
	type rel struct {
		oid          uint32
		schema, name string
	}
	var rels []rel
	for rows.Next() {
		var r rel
		if err := rows.Scan(&r.oid, &r.schema, &r.name); err != nil {
			rows.Close()
			return nil, err
		}
		if m.Includes(r.schema, r.name) && matches(patterns, r.schema, r.name) {
			rels = append(rels, r)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list source tables: %w", err)
	}
	var out []*table
	for _, r := range rels {
		st, err := schema.Read(ctx, q, r.oid)
		if err != nil {
			return nil, err
		}
		ts, tn := m.Target(r.schema, r.name)
		st, err = st.Map(schema.Name{Schema: ts, Name: tn}, func(col string) (string, bool) {
			return m.Column(r.schema, r.name, col)
		})
		if err != nil {
			return nil, err
		}
		out = append(out, newTable(st, m.Where(r.schema, r.name)))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Rows > out[j].Rows })
	return out, nil
}

// matches reports whether schema.name matches one of patterns (all when
// none); a pattern without a dot matches the table name in any schema.
func matches(patterns []string, schema, name string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		full := schema + "." + name
		if !strings.Contains(p, ".") {
			full = name
		}
		if ok, _ := path.Match(p, full); ok {
			return true
		}
	}
	return false
}

func newTable(st *schema.Table, where string) *table {
	t := &table{Table: st, where: where,
		srcName: pgx.Identifier{st.Source.Schema, st.Source.Name}.Sanitize(),
		dstName: pgx.Identifier{st.Target.Schema, st.Target.Name}.Sanitize()}
	for _, c := range st.Columns {
		t.srcCols = append(t.srcCols, pgx.Identifier{c.Source}.Sanitize())
		t.dstCols = append(t.dstCols, pgx.Identifier{c.Name}.Sanitize())
	}
	for _, k := range st.PrimaryKey {
		c := st.Columns[st.Column(k)]
		t.srcKey = append(t.srcKey, pgx.Identifier{c.Source}.Sanitize())
		t.dstKey = append(t.dstKey, pgx.Identifier{c.Name}.Sanitize())
		t.keyTypes = append(t.keyTypes, c.Type)
		t.keyNames = append(t.keyNames, c.Name)
	}
	return t
}

// side is the SQL vocabulary of one side of a table.
type side struct {
	name  string   // quoted table
	cols  []string // compared columns
	key   []string
	where string // row filter (source only)
}

func (t *table) src() side { return side{t.srcName, t.srcCols, t.srcKey, t.where} }
func (t *table) dst() side { return side{t.dstName, t.dstCols, t.dstKey, ""} }

// krange is a key range [Lo, Hi); nil bounds are open.
type krange struct{ Lo, Hi []string }

// cond is the WHERE clause of r on s ("" when none).
func (t *table) cond(s side, r krange) string {
	var conds []string
	row := "(" + strings.Join(s.key, ", ") + ")"
	if len(s.key) == 1 {
		row = s.key[0]
	}
	if r.Lo != nil {
		conds = append(conds, row+" >= "+literalRow(r.Lo, t.keyTypes))
	}
	if r.Hi != nil {
		conds = append(conds, row+" < "+literalRow(r.Hi, t.keyTypes))
	}
	if s.where != "" {
		conds = append(conds, "("+s.where+")")
	}
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
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

// rowHash is the md5 of a row's canonical text.
func rowHash(s side) string {
	return "md5(ROW(" + strings.Join(s.cols, ", ") + ")::text)"
}

// sumSQL counts the rows of r and sums their hashes' first 64 bits.
func (t *table) sumSQL(s side, r krange) string {
	if t.counts {
		return "SELECT count(*), '' FROM ONLY " + s.name + t.cond(s, r)
	}
	return "SELECT count(*), coalesce(sum(('x' || left(" + rowHash(s) + ", 16))::bit(64)::int8), 0)::text FROM ONLY " +
		s.name + t.cond(s, r)
}

// rowsSQL lists the key (as text) and hash of every row of r.
func (t *table) rowsSQL(s side, r krange) string {
	keys := make([]string, len(s.key))
	for i, k := range s.key {
		keys[i] = k + "::text"
	}
	return "SELECT " + strings.Join(keys, ", ") + ", " + rowHash(s) + " FROM ONLY " + s.name + t.cond(s, r)
}

// splitSQL returns every step-th key of r in key order: the bounds of
// sub-ranges of about step rows.
func (t *table) splitSQL(s side, r krange, step int64) string {
	keys := make([]string, len(s.key))
	for i, k := range s.key {
		keys[i] = k + "::text"
	}
	return "SELECT " + strings.Join(keys, ", ") + " FROM (SELECT " + strings.Join(s.key, ", ") +
		", row_number() OVER (ORDER BY " + strings.Join(s.key, ", ") + ") AS cdcd_rn FROM ONLY " + s.name + t.cond(s, r) +
		") AS k(" + strings.Join(s.key, ", ") + ", cdcd_rn) WHERE cdcd_rn % " + strconv.FormatInt(step, 10) + " = 0 ORDER BY cdcd_rn"
}

// ranges splits the table into key ranges of about rangeRows source rows:
// arithmetic over min..max for a single integer key, else every
// rangeRows-th key. Keyless and small tables are one range.
func (t *table) ranges(ctx context.Context, q *pgx.Conn, rangeRows int64) ([]krange, error) {
	if len(t.PrimaryKey) == 0 {
		return []krange{{}}, nil
	}
	if t.Rows <= 0 {
		// Never analyzed: count under the snapshot.
		if err := q.QueryRow(ctx, "SELECT count(*) FROM ONLY "+t.srcName).Scan(&t.Rows); err != nil {
			return nil, fmt.Errorf("count rows of %s: %w", t.Source, err)
		}
	}
	if t.Rows < 2*rangeRows {
		return []krange{{}}, nil
	}
	s := t.src()
	s.where = "" // ranges partition the key space, filtered or not
	n := (t.Rows + rangeRows - 1) / rangeRows
	if bounds, ok, err := schema.IntKeyBounds(ctx, q, t.Table, s.name, s.key[0], n); err != nil {
		return nil, fmt.Errorf("key range of %s: %w", t.Source, err)
	} else if ok {
		return splitAt(krange{}, bounds), nil
	}
	bounds, err := t.bounds(ctx, q, s, krange{}, rangeRows)
	if err != nil {
		return nil, err
	}
	return splitAt(krange{}, bounds), nil
}

// bounds reads every step-th key of r on side s.
func (t *table) bounds(ctx context.Context, q *pgx.Conn, s side, r krange, step int64) ([][]string, error) {
	rows, err := q.Query(ctx, t.splitSQL(s, r, step))
	if err != nil {
		return nil, fmt.Errorf("split key range of %s: %w", t.Source, err)
	}
	var out [][]string
	for rows.Next() {
		vals := make([]string, len(s.key))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("split key range of %s: %w", t.Source, err)
	}
	return out, nil
}

// splitAt cuts r at the given ascending bounds.
func splitAt(r krange, bounds [][]string) []krange {
	var out []krange
	prev := r.Lo
	for _, b := range bounds {
		out = append(out, krange{Lo: prev, Hi: b})
		prev = b
	}
	return append(out, krange{Lo: prev, Hi: r.Hi})
}
