package schema

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Ensure creates on the target conn what is missing of tables (schemas, enum
// and domain types, tables) and checks the tables that exist for
// compatible columns. Every incompatibility of every table is reported in
// one error. Without create, a missing table is such an incompatibility.
// With deferKeys, created tables get no primary key yet (see
// AddPrimaryKey). It returns the target names of the tables it created.
func Ensure(ctx context.Context, conn *pgx.Conn, tables []*Table, create, deferKeys bool) ([]string, error) {
	var problems []string
	var created []string
	doneTypes := map[Name]bool{}
	for _, t := range tables {
		cols, exists, err := targetColumns(ctx, conn, t.Target)
		if err != nil {
			return nil, err
		}
		if exists {
			problems = append(problems, compare(t, cols)...)
			continue
		}
		if !create {
			problems = append(problems, fmt.Sprintf("%s does not exist (source %s)", t.Target, t.Source))
			continue
		}
		if err := createTable(ctx, conn, t, deferKeys, doneTypes); err != nil {
			return nil, err
		}
		created = append(created, t.Target.String())
	}
	if len(problems) > 0 {
		return created, fmt.Errorf("target tables do not match the source: %s; fix or drop those target tables (schema.create: true makes missing ones)",
			strings.Join(problems, "; "))
	}
	return created, nil
}

// targetColumn is an existing target column.
type targetColumn struct {
	typ     string // format_type(atttypid, -1), unqualified
	notNull bool
}

func targetColumns(ctx context.Context, q Querier, n Name) (map[string]targetColumn, bool, error) {
	rows, err := q.Query(ctx, `
SELECT a.attname, format_type(a.atttypid, -1), a.attnotnull
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE ns.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, n.Schema, n.Name)
	if err != nil {
		return nil, false, fmt.Errorf("read target table %s: %w", n, err)
	}
	defer rows.Close()
	cols := map[string]targetColumn{}
	exists := false
	for rows.Next() {
		var name, typ *string
		var nn *bool
		if err := rows.Scan(&name, &typ, &nn); err != nil {
			return nil, false, fmt.Errorf("read target table %s: %w", n, err)
		}
		exists = true
		if name != nil {
			cols[*name] = targetColumn{typ: unqualify(*typ), notNull: *nn}
		}
	}
	return cols, exists, rows.Err()
}

// compare lists the columns of t an existing target table cannot take.
func compare(t *Table, cols map[string]targetColumn) []string {
	var out []string
	for _, c := range t.Columns {
		tc, ok := cols[c.Name]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s has no column %s (%s)", t.Target, c.Name, c.BaseType))
		case tc.typ != c.BaseType:
			out = append(out, fmt.Sprintf("%s.%s is %s, the source's %s.%s is %s", t.Target, c.Name, tc.typ, t.Source, c.Source, c.BaseType))
		}
	}
	return out
}

// Compatible reports whether an existing target table has every column of
// t with the very same types, so binary COPY can load it.
func Compatible(ctx context.Context, q Querier, t *Table) (bool, error) {
	cols, exists, err := targetColumns(ctx, q, t.Target)
	if err != nil || !exists {
		return false, err
	}
	return len(compare(t, cols)) == 0, nil
}

func createTable(ctx context.Context, conn *pgx.Conn, t *Table, deferKeys bool, doneTypes map[Name]bool) error {
	schemas := []string{t.Target.Schema}
	for _, ty := range t.Types {
		schemas = append(schemas, ty.Name.Schema)
	}
	slices.Sort(schemas)
	for _, s := range slices.Compact(schemas) {
		if err := createSchema(ctx, conn, s); err != nil {
			return err
		}
	}
	for _, ty := range t.Types {
		if doneTypes[ty.Name] {
			continue
		}
		if err := ensureType(ctx, conn, ty); err != nil {
			return err
		}
		doneTypes[ty.Name] = true
	}
	var b strings.Builder
	b.WriteString("CREATE TABLE ")
	b.WriteString(pgx.Identifier{t.Target.Schema, t.Target.Name}.Sanitize())
	b.WriteString(" (")
	for i, c := range t.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(pgx.Identifier{c.Name}.Sanitize())
		b.WriteString(" ")
		b.WriteString(c.Type)
		if c.Default != "" {
			b.WriteString(" DEFAULT ")
			b.WriteString(c.Default)
		}
		if c.NotNull {
			b.WriteString(" NOT NULL")
		}
	}
	if len(t.PrimaryKey) > 0 && !deferKeys {
		b.WriteString(", PRIMARY KEY (")
		b.WriteString(quoteList(t.PrimaryKey))
		b.WriteString(")")
	}
	b.WriteString(")")
	if _, err := conn.Exec(ctx, b.String()); err != nil {
		return fmt.Errorf("create target table %s: %w", t.Target, err)
	}
	return nil
}

// AddPrimaryKey adds t's primary key to its target table unless the table
// has one already.
func AddPrimaryKey(ctx context.Context, conn *pgx.Conn, t *Table) error {
	if len(t.PrimaryKey) == 0 {
		return nil
	}
	var has bool
	tbl := pgx.Identifier{t.Target.Schema, t.Target.Name}.Sanitize()
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index WHERE indrelid = $1::regclass AND indisprimary)`, tbl).Scan(&has); err != nil {
		return fmt.Errorf("look up primary key of %s: %w", t.Target, err)
	}
	if has {
		return nil
	}
	// The index is built by one sort of the loaded table: give it memory
	// enough to sort in memory (a 5M-row int key spilled to 321 tapes at
	// 256MB and took 20% longer), for this transaction only, never less
	// than the server's setting.
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("add primary key to %s: %w", t.Target, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT set_config('maintenance_work_mem',
	greatest($1::int8, (SELECT setting::int8 FROM pg_catalog.pg_settings WHERE name = 'maintenance_work_mem'))::text || 'kB', true)`,
		keySortKB(t)); err != nil {
		return fmt.Errorf("add primary key to %s: %w", t.Target, err)
	}
	if _, err := tx.Exec(ctx, "ALTER TABLE "+tbl+" ADD PRIMARY KEY ("+quoteList(t.PrimaryKey)+")"); err != nil {
		return fmt.Errorf("add primary key to %s: %w", t.Target, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("add primary key to %s: %w", t.Target, err)
	}
	return nil
}

// keySortKB is the maintenance_work_mem, in kB, that sorts t's primary key
// in memory: per row a SortTuple (24 bytes), an index tuple (8-byte header
// and the key, 8-aligned) and its allocation header (16), doubled (the
// SortTuple array grows by doubling); at least 256MB, at most 1GB (several
// tables may build keys at once).
func keySortKB(t *Table) int64 {
	key := int64(0)
	for _, k := range t.PrimaryKey {
		i := t.Column(k)
		if i < 0 {
			key += 32
			continue
		}
		switch t.Columns[i].TypeOID {
		case 16, 18, 21: // bool, "char", int2
			key += 2
		case 23, 26, 700, 1082: // int4, oid, float4, date
			key += 4
		case 20, 701, 1083, 1114, 1184: // int8, float8, time, timestamp(tz)
			key += 8
		case 2950: // uuid
			key += 16
		default:
			key += 32
		}
	}
	perRow := 24 + 8 + (key+7)/8*8 + 16
	kb := max(t.Rows, 0) * perRow * 2 / 1024
	return min(max(kb, 256<<10), 1<<20)
}

func createSchema(ctx context.Context, conn *pgx.Conn, s string) error {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)`, s).Scan(&exists); err != nil {
		return fmt.Errorf("look up target schema %s: %w", s, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{s}.Sanitize()); err != nil {
		return fmt.Errorf("create target schema %s: %w", s, err)
	}
	return nil
}

// ensureType creates an enum or domain type, or checks the existing one: an
// enum must have every source label.
func ensureType(ctx context.Context, conn *pgx.Conn, ty *Type) error {
	var kind string
	var labels []string
	err := conn.QueryRow(ctx, `SELECT t.typtype::text,
		array(SELECT e.enumlabel::text FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)
		FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
		WHERE n.nspname = $1 AND t.typname = $2`, ty.Name.Schema, ty.Name.Name).Scan(&kind, &labels)
	name := pgx.Identifier{ty.Name.Schema, ty.Name.Name}.Sanitize()
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("look up target type %s: %w", ty.Name, err)
	case kind != string(ty.Kind):
		return fmt.Errorf("target type %s exists but is not an %s: drop or rename it", ty.Name, kindName(ty.Kind))
	case ty.Kind == 'e':
		for _, l := range ty.Labels {
			if !slices.Contains(labels, l) {
				return fmt.Errorf("target enum %s lacks the source label %q: ALTER TYPE %s ADD VALUE %s", ty.Name, l, name, quoteLiteral(l))
			}
		}
		return nil
	default:
		return nil
	}
	var b strings.Builder
	if ty.Kind == 'e' {
		b.WriteString("CREATE TYPE " + name + " AS ENUM (")
		for i, l := range ty.Labels {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(quoteLiteral(l))
		}
		b.WriteString(")")
	} else {
		b.WriteString("CREATE DOMAIN " + name + " AS " + ty.Base)
		if ty.Default != "" {
			b.WriteString(" DEFAULT " + ty.Default)
		}
		if ty.NotNull {
			b.WriteString(" NOT NULL")
		}
		for _, c := range ty.Checks {
			b.WriteString(" " + c)
		}
	}
	if _, err := conn.Exec(ctx, b.String()); err != nil {
		return fmt.Errorf("create target type %s: %w", ty.Name, err)
	}
	return nil
}

func kindName(k byte) string {
	if k == 'e' {
		return "enum"
	}
	return "domain"
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = pgx.Identifier{n}.Sanitize()
	}
	return strings.Join(q, ", ")
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings
// on, the default since PostgreSQL 9.1; E” would also work).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
