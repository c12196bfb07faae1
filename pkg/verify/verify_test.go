package verify_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/internal/typezoo"
	"github.com/cdcd-io/cdcd/pkg/mapping"
	"github.com/cdcd-io/cdcd/pkg/verify"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// run verifies and returns the result and its text report.
func run(t *testing.T, cfg verify.Config) (*verify.Result, string, error) {
	t.Helper()
	res, err := verify.Run(testCtx(t), cfg)
	if res == nil {
		require.NoError(t, err)
	}
	var b bytes.Buffer
	res.WriteText(&b)
	t.Log("\n" + b.String())
	return res, b.String(), err
}

func table(t *testing.T, res *verify.Result, name string) verify.TableResult {
	t.Helper()
	for _, x := range res.Targets[0].Tables {
		if x.Source == name {
			return x
		}
	}
	t.Fatalf("table %s not in the result", name)
	return verify.TableResult{}
}

// TestFindsChangedExtraAndMissingRows compares a PG15 source with a PG17
// target through a mapping (renamed table and column, excluded column, row
// filter), with ranges small enough that bisection has several levels.
func TestFindsChangedExtraAndMissingRows(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target", Version: pgtest.V17})
	src.ExecT(t, "postgres",
		`CREATE TABLE items (id int PRIMARY KEY, qty int, note text)`,
		`INSERT INTO items SELECT g, g % 7, 'note ' || g FROM generate_series(1, 20000) g`,
		`CREATE TABLE pairs (region text, n bigint, v numeric, PRIMARY KEY (region, n))`,
		`INSERT INTO pairs SELECT r, g, g / 3.0 FROM generate_series(1, 3000) g, unnest(ARRAY['eu', 'us', 'ap']) r`,
		`CREATE TABLE employee (id int PRIMARY KEY, name text, ssn text, dept text)`,
		`INSERT INTO employee SELECT g, 'e' || g, 'secret', CASE WHEN g % 3 = 0 THEN 'test' ELSE 'ops' END FROM generate_series(1, 300) g`,
		`ANALYZE`)
	dst.ExecT(t, "postgres",
		`CREATE TABLE items (id int PRIMARY KEY, qty int, note varchar(40))`, // text-equal type
		`INSERT INTO items SELECT g, g % 7, 'note ' || g FROM generate_series(1, 20000) g`,
		`CREATE TABLE pairs (region text, n bigint, v numeric, PRIMARY KEY (region, n))`,
		`INSERT INTO pairs SELECT r, g, g / 3.0 FROM generate_series(1, 3000) g, unnest(ARRAY['eu', 'us', 'ap']) r`,
		`CREATE SCHEMA hr`,
		`CREATE TABLE hr.employees (id int PRIMARY KEY, full_name text, dept text)`,
		`INSERT INTO hr.employees SELECT g, 'e' || g, 'ops' FROM generate_series(1, 300) g WHERE g % 3 <> 0`)
	m, err := mapping.New(mapping.Config{Tables: []mapping.Table{{
		From: "public.employee", To: "hr.employees", ExcludeColumns: []string{"ssn"},
		RenameColumns: map[string]string{"name": "full_name"}, Where: "dept <> 'test'",
	}}})
	require.NoError(t, err)
	cfg := verify.Config{
		SourceDSN: src.DSN("postgres"), Targets: []verify.Target{{Name: "green", DSN: dst.DSN("postgres")}},
		Map: m, RangeRows: 2000, LeafRows: 100, MaxKeys: 5,
	}
	res, out, err := run(t, cfg)
	require.NoError(t, err)
	require.True(t, res.Match)
	require.Equal(t, "static", res.Mode)
	require.Len(t, res.Targets[0].Tables, 3)
	require.Greater(t, table(t, res, "public.items").Ranges, 5, "a large table is split into ranges")
	require.Equal(t, int64(200), table(t, res, "public.employee").Rows, "the row filter applies on the source")
	require.Contains(t, out, "public.employee → hr.employees")
	require.Contains(t, out, "all match")

	dst.ExecT(t, "postgres",
		`UPDATE items SET note = 'changed' WHERE id = 12345`,
		`DELETE FROM items WHERE id = 777`,
		`INSERT INTO items VALUES (20001, 1, 'extra')`,
		`UPDATE pairs SET v = v + 0.000001 WHERE region = 'us' AND n = 42`,
		`UPDATE hr.employees SET full_name = 'x' WHERE id = 7`)
	res, out, err = run(t, cfg)
	require.ErrorIs(t, err, verify.ErrMismatch)
	require.False(t, res.Match)
	items := table(t, res, "public.items")
	require.False(t, items.Match)
	require.Equal(t, []string{"(id)=(777)"}, items.Missing)
	require.Equal(t, []string{"(id)=(20001)"}, items.Extra)
	require.Equal(t, []string{"(id)=(12345)"}, items.Changed)
	require.Equal(t, []string{"(region, n)=(us, 42)"}, table(t, res, "public.pairs").Changed)
	require.Equal(t, []string{"(id)=(7)"}, table(t, res, "public.employee").Changed)
	require.Contains(t, out, "missing on target: (id)=(777)")
	require.Contains(t, out, "3 differ")

	// Many differences: the first MaxKeys are named, all are counted.
	dst.ExecT(t, "postgres", `DELETE FROM items WHERE id BETWEEN 100 AND 199`)
	res, _, err = run(t, cfg)
	require.ErrorIs(t, err, verify.ErrMismatch)
	items = table(t, res, "public.items")
	require.Len(t, items.Missing, 5)
	require.Equal(t, int64(101), items.MissingCount)

	// Repair re-copies the differing ranges; then everything matches.
	cfg.Repair = true
	_, out, err = run(t, cfg)
	require.ErrorIs(t, err, verify.ErrMismatch, "the run that repairs reports what it found")
	require.Contains(t, out, "repaired")
	cfg.Repair = false
	res, _, err = run(t, cfg)
	require.NoError(t, err)
	require.True(t, res.Match)

	// Only some tables; a missing target table is named.
	dst.ExecT(t, "postgres", `DROP TABLE pairs`)
	cfg.Tables = []string{"pairs"}
	res, out, err = run(t, cfg)
	require.ErrorIs(t, err, verify.ErrMismatch)
	require.Len(t, res.Targets[0].Tables, 1)
	require.Contains(t, out, "table public.pairs does not exist on target green")
}

func TestTypeZooMatchesAcrossVersions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target", Version: pgtest.V17})
	for _, c := range []*pgtest.Cluster{src, dst} {
		c.ExecT(t, "postgres", typezoo.DDL)
		c.ExecT(t, "postgres", typezoo.Rows...)
	}
	// The target's rows are written in a session with other settings
	// still: the values are the same, their text in those sessions is not.
	cfg := verify.Config{SourceDSN: src.DSN("postgres"), Targets: []verify.Target{{Name: "green", DSN: dst.DSN("postgres")}}}
	res, _, err := run(t, cfg)
	require.NoError(t, err)
	require.True(t, res.Match)
	require.Equal(t, int64(4), table(t, res, "public.zoo").Rows)

	for _, change := range []string{
		`UPDATE zoo SET tstz = tstz + interval '1 microsecond' WHERE id = 1`,
		`UPDATE zoo SET d = 1.0000000000000002 WHERE id = 1`,
		`UPDATE zoo SET big = big || 'x' WHERE id = 4`,
	} {
		err := dst.Exec(testCtx(t), "postgres", "BEGIN; "+change+"; COMMIT")
		require.NoError(t, err)
		res, _, err := run(t, cfg)
		require.ErrorIs(t, err, verify.ErrMismatch, change)
		require.Len(t, table(t, res, "public.zoo").Changed, 1, change)
		cfg.Repair = true
		_, _, err = run(t, cfg)
		require.True(t, errors.Is(err, verify.ErrMismatch))
		cfg.Repair = false
		res, _, err = run(t, cfg)
		require.NoError(t, err, "repaired after %s", change)
		require.True(t, res.Match)
	}
}

func TestErrorsNameTheServer(t *testing.T) {
	_, err := verify.Run(testCtx(t), verify.Config{SourceDSN: "postgres://u:hunter2@127.0.0.1:1/x?connect_timeout=2",
		Targets: []verify.Target{{Name: "green", DSN: "postgres://127.0.0.1:1/x"}}})
	require.Error(t, err)
	require.Contains(t, err.Error(), "connect to the source")
	require.False(t, strings.Contains(err.Error(), "hunter2"), err.Error())
	_, err = verify.Run(testCtx(t), verify.Config{SourceDSN: "postgres://127.0.0.1:1/x"})
	require.ErrorContains(t, err, "no postgres sink")
}
