package snapshot_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// TestMapping: include/exclude patterns, a table mapped to another schema
// and name, an excluded and a renamed column, and a row filter — reflected
// in the target after the snapshot and after the stream (including updates
// that move rows into and out of the filter).
func TestMapping(t *testing.T) {
	if testing.Short() {
		t.Skip("real servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	src.ExecT(t, "postgres",
		`CREATE TABLE employee (id int PRIMARY KEY, name text, ssn text, department text)`,
		// The filter's column must be in the replica identity, or the
		// source would refuse updates (checked by cdcd, see below).
		`ALTER TABLE employee REPLICA IDENTITY FULL`,
		`CREATE TABLE audit_log (id int PRIMARY KEY, x text)`,
		`CREATE SCHEMA app`,
		`CREATE TABLE app.orders (id int PRIMARY KEY, amount int)`,
		`CREATE TABLE app.other (id int PRIMARY KEY)`,
		`INSERT INTO employee SELECT g, 'name ' || g, 'ssn' || g, CASE WHEN g % 4 = 0 THEN 'test' ELSE 'eng' END FROM generate_series(1, 2000) g`,
		`INSERT INTO audit_log SELECT g, 'a' FROM generate_series(1, 100) g`,
		`INSERT INTO app.orders SELECT g, g * 10 FROM generate_series(1, 3000) g`,
		`INSERT INTO app.other SELECT g FROM generate_series(1, 10) g`,
	)
	expected := `SELECT id, name AS full_name, department FROM employee WHERE department <> 'test'`
	check := func(what string) {
		t.Helper()
		require.Equal(t, digest(t, src, expected, "id"), digest(t, dst, "SELECT id, full_name, department FROM hr.employees", "id"), "employees %s", what)
		require.Equal(t, digest(t, src, "SELECT * FROM app.orders", "id"), digest(t, dst, "SELECT * FROM app.orders2", "id"), "orders %s", what)
		var n int
		require.NoError(t, dst.QueryRow(`SELECT count(*) FROM pg_class WHERE relname IN ('audit_log', 'other', 'employee', 'orders') AND relkind = 'r'`, &n))
		require.Zero(t, n, "excluded and renamed tables are not on the target")
		require.NoError(t, dst.QueryRow(`SELECT count(*) FROM pg_attribute WHERE attrelid = 'hr.employees'::regclass AND attname IN ('ssn', 'name')`, &n))
		require.Zero(t, n, "ssn excluded, name renamed")
	}
	r := startPipeline(t, yamlConfig(src, dst, t.TempDir(), `
snapshot: { mode: initial, parallelism: 2, chunk_rows: 500 }
schema: { create: true }
tables:
  include: ["public.*", "app.orders"]
  exclude: ["public.audit_*"]
mappings:
  - from: public.employee
    to: hr.employees
    columns: { exclude: [ssn], rename: { name: full_name } }
    where: "department <> 'test'"
  - from: app.orders
    to: orders2
`))
	r.WaitApplied(t, src.MarkerT(t), time.Minute)
	check("after the snapshot")
	src.ExecT(t, "postgres",
		`INSERT INTO employee VALUES (5001, 'new eng', 's', 'eng'), (5002, 'new test', 's', 'test')`,
		`UPDATE employee SET department = 'test' WHERE id BETWEEN 1 AND 50`,   // out of the filter: deleted
		`UPDATE employee SET department = 'ops' WHERE id BETWEEN 100 AND 140`, // test ones come into the filter
		`UPDATE employee SET name = 'renamed', ssn = 'x' WHERE id % 7 = 0`,
		`DELETE FROM employee WHERE id % 13 = 0`,
		`INSERT INTO audit_log VALUES (1000, 'b')`,
		`INSERT INTO app.other VALUES (1000)`,
		`UPDATE app.orders SET amount = -amount WHERE id % 3 = 0`,
		`DELETE FROM app.orders WHERE id % 10 = 0`,
		`TRUNCATE audit_log`,
	)
	r.WaitApplied(t, src.MarkerT(t), time.Minute)
	r.Stop(t)
	check("after the stream")
}

// TestRowFilterNeedsReplicaIdentity: a row filter on a column outside the
// replica identity would make the source reject UPDATE and DELETE: cdcd
// refuses it with the remedy and creates no publication.
func TestRowFilterNeedsReplicaIdentity(t *testing.T) {
	if testing.Short() {
		t.Skip("real servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	src.ExecT(t, "postgres", `CREATE TABLE employee (id int PRIMARY KEY, department text)`)
	r := startPipeline(t, yamlConfig(src, dst, t.TempDir(), `
mappings:
  - from: public.employee
    where: "department <> 'test'"
`))
	var err error
	select {
	case err = <-r.Done:
		r.Done <- err
	case <-time.After(time.Minute):
		t.Fatal("pipeline did not stop")
	}
	require.ErrorContains(t, err, "row filter on public.employee uses column department, which is not in its replica identity")
	var n int
	require.NoError(t, src.QueryRow(`SELECT count(*) FROM pg_publication`, &n))
	require.Zero(t, n)
}
