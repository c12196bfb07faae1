package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// target names a table on the target database.
type target struct{ schema, name string }

func (t target) String() string { return t.schema + "." + t.name }

// sql is the quoted, schema-qualified name for statements.
func (t target) sql() string { return pgx.Identifier{t.schema, t.name}.Sanitize() }

// targetFor maps a source relation to the table it is applied to. Today the
// target is the table of the same schema and name; a configurable mapping
// belongs here and nowhere else.
func targetFor(rel *change.Relation) target { return target{rel.Schema, rel.Name} }

// table is what the sink knows of one relation's target table: enough to
// build statements for the relation's rows.
type table struct {
	target target
	// cols are the source relation's columns in its order: quoted target
	// column name and the target type to cast text values to.
	cols []column
	keys []int // the relation's key columns (rel.KeyColumns())
	// conflict is the quoted key column list for ON CONFLICT, "" for a
	// keyless table.
	conflict string
}

type column struct {
	name string // quoted
	// typ is format_type(atttypid, -1): the type without its modifier, so
	// that the assignment to the column applies the modifier (and errs
	// rather than truncates). -1 rather than NULL: format_type(bit, NULL)
	// is "bit", which the parser reads as bit(1); with -1 it is "bit" quoted,
	// the unconstrained type (bpchar likewise).
	typ string
}

// catalogQuery returns the target table's columns (one row with NULL columns
// when it has none) or no row when it does not exist.
const catalogQuery = `
SELECT c.oid, a.attname, format_type(a.atttypid, -1)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`

// uniqueQuery returns the column names of the indexes that ON CONFLICT can
// use as arbiters: unique, immediate, valid, without predicate or expression.
const uniqueQuery = `
SELECT array(SELECT a.attname FROM unnest(i.indkey::int2[]) k JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k)
FROM pg_catalog.pg_index i
WHERE i.indrelid = $1 AND i.indisunique AND i.indimmediate AND i.indisvalid
  AND i.indpred IS NULL AND i.indexprs IS NULL`

// table returns the target table of rel, reading the catalog on first use of
// rel (a relation is one schema version of a source table).
func (s *Sink) table(ctx context.Context, q querier, rel *change.Relation) (*table, error) {
	if t := s.tables[rel]; t != nil {
		return t, nil
	}
	t, err := s.lookup(ctx, q, rel)
	if err != nil {
		return nil, err
	}
	s.tables[rel] = t
	return t, nil
}

// querier is what catalog lookups need: a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (s *Sink) lookup(ctx context.Context, q querier, rel *change.Relation) (*table, error) {
	dropped, retyped := s.evolve(rel)
	tgt := targetFor(rel)
	oid, types, found, err := readTarget(ctx, q, tgt)
	if err != nil {
		return nil, err
	}
	if !found {
		if !s.cfg.CreateSchema {
			return nil, fmt.Errorf("target table %s does not exist on sink %q: create it first, or set schema.create: true", tgt, s.cfg.Name)
		}
		if s.dsqlMode() {
			return nil, fmt.Errorf("target table %s does not exist on sink %q: the aurora-dsql flavor creates tables before streaming only "+
				"(schema.create with snapshot.mode initial), as DSQL allows no DDL in a transaction that writes rows: create it by hand", tgt, s.cfg.Name)
		}
		if err := s.createTable(ctx, rel); err != nil {
			return nil, err
		}
		if oid, types, _, err = readTarget(ctx, q, tgt); err != nil {
			return nil, err
		}
	}
	var missing []string
	for _, c := range rel.Columns {
		if _, ok := types[c.Name]; !ok {
			missing = append(missing, c.Name)
		}
	}
	if len(missing) > 0 {
		if !s.cfg.CreateSchema || s.dsqlMode() {
			return nil, fmt.Errorf("target table %s on sink %q has no column %s (source table %s has it): add it to the target, or set schema.create: true",
				tgt, s.cfg.Name, missing[0], rel.QualifiedName())
		}
		if err := s.addColumns(ctx, rel, missing); err != nil {
			return nil, err
		}
		if oid, types, _, err = readTarget(ctx, q, tgt); err != nil {
			return nil, err
		}
	}
	if err := s.checkRetyped(ctx, q, rel, retyped); err != nil {
		return nil, err
	}
	if err := s.relaxDropped(ctx, rel, dropped); err != nil {
		return nil, err
	}
	t := &table{target: tgt, keys: rel.KeyColumns()}
	for _, c := range rel.Columns {
		t.cols = append(t.cols, column{name: pgx.Identifier{c.Name}.Sanitize(), typ: types[c.Name]})
	}
	if len(t.keys) == 0 {
		return t, nil
	}
	keyNames := make([]string, len(t.keys))
	for i, k := range t.keys {
		keyNames[i] = rel.Columns[k].Name
	}
	if err := s.checkUnique(ctx, q, oid, tgt, keyNames); err != nil {
		return nil, err
	}
	quoted := make([]string, len(t.keys))
	for i, k := range t.keys {
		quoted[i] = t.cols[k].name
	}
	t.conflict = strings.Join(quoted, ", ")
	return t, nil
}

// readTarget reads the target table's OID and column types; found is false
// when it does not exist.
func readTarget(ctx context.Context, q querier, tgt target) (oid uint32, types map[string]string, found bool, err error) {
	rows, err := q.Query(ctx, catalogQuery, tgt.schema, tgt.name)
	if err != nil {
		return 0, nil, false, fmt.Errorf("reading the catalog for target table %s: %w", tgt, err)
	}
	types = map[string]string{}
	for rows.Next() {
		var name, typ *string
		if err := rows.Scan(&oid, &name, &typ); err != nil {
			rows.Close()
			return 0, nil, false, fmt.Errorf("reading the catalog for target table %s: %w", tgt, err)
		}
		found = true
		if name != nil && typ != nil {
			types[*name] = *typ
		}
	}
	if err := rows.Err(); err != nil {
		return 0, nil, false, fmt.Errorf("reading the catalog for target table %s: %w", tgt, err)
	}
	return oid, types, found, nil
}

// checkUnique makes sure upserts by the key columns have an arbiter index on
// the target, so a missing one is a clear error rather than 42P10 later.
func (s *Sink) checkUnique(ctx context.Context, q querier, oid uint32, tgt target, keyNames []string) error {
	rows, err := q.Query(ctx, uniqueQuery, oid)
	if err != nil {
		return fmt.Errorf("reading the indexes of target table %s: %w", tgt, err)
	}
	want := slices.Sorted(slices.Values(keyNames))
	found := false
	for rows.Next() {
		var cols []string
		if err := rows.Scan(&cols); err != nil {
			rows.Close()
			return fmt.Errorf("reading the indexes of target table %s: %w", tgt, err)
		}
		slices.Sort(cols)
		if slices.Equal(cols, want) {
			found = true
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading the indexes of target table %s: %w", tgt, err)
	}
	if !found {
		return fmt.Errorf("target table %s on sink %q has no primary key or unique index on (%s), the source's key: create one",
			tgt, s.cfg.Name, strings.Join(keyNames, ", "))
	}
	return nil
}
