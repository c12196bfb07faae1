package trigger

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// userTablesSQL lists the tables a nil Include captures: ordinary and
// partitioned tables outside cdcd's and the system's schemas. Partitions
// are included too: a statement-level trigger fires on the table a
// statement names, so a write through the parent is captured by the
// parent's trigger and a write straight into a partition by the
// partition's, and neither is lost.
const userTablesSQL = `
SELECT n.nspname::text, c.relname::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('cdcd', 'pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
ORDER BY 1, 2`

// Tables lists the user tables include selects (nil: every user table, not
// in schema cdcd, pg_catalog or information_schema), in schema and name
// order: what `cdcd trigger install` and Config.Create install triggers on.
func Tables(ctx context.Context, conn Conn, include func(schema, table string) bool) ([]Table, error) {
	rows, err := conn.Query(ctx, userTablesSQL)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Table, error) {
		var t Table
		err := r.Scan(&t.Schema, &t.Name)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	var out []Table
	for _, t := range all {
		if include == nil || include(t.Schema, t.Name) {
			out = append(out, t)
		}
	}
	return out, nil
}

// Verify checks that trigger capture is installed for tables: the change
// log, the source id, and the four cdcd triggers on each table. It returns
// nil, or one error wrapping ErrNotInstalled that names every missing object
// and the remedy (`cdcd trigger install --config <file>`).
func Verify(ctx context.Context, conn Conn, tables []Table) error {
	var logOK, idOK bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('cdcd.change_log') IS NOT NULL, to_regclass('cdcd.source_id') IS NOT NULL`).
		Scan(&logOK, &idOK); err != nil {
		return fmt.Errorf("verify trigger capture: %w", err)
	}
	var missing []string
	if !logOK {
		missing = append(missing, "table "+logTable)
	}
	if !idOK {
		missing = append(missing, "table "+idTable)
	}
	want := strings.Split(triggerNames, ", ")
	for _, t := range tables {
		var have []string
		rows, err := conn.Query(ctx, `SELECT t.tgname::text FROM pg_trigger t
			JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace
			WHERE t.tgrelid = to_regclass($1) AND pn.nspname = 'cdcd' AND t.tgname = ANY($2) AND t.tgenabled <> 'D'`,
			t.String(), want)
		if err == nil {
			have, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil {
			return fmt.Errorf("verify trigger capture: list triggers on %s: %w", t, err)
		}
		if len(have) < len(want) {
			missing = append(missing, fmt.Sprintf("triggers on %s (%d of %d)", t, len(have), len(want)))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s: run %s", ErrNotInstalled, strings.Join(missing, ", "), remedy)
	}
	return nil
}
