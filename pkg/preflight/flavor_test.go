package preflight_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/preflight"
	pgsink "github.com/cdcd-io/cdcd/pkg/sink/postgres"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
)

// TestDSQLRules: cdcd check names each DSQL rule the configured tables and
// target would break, before anything runs.
func TestDSQLRules(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	c := pgtest.StartT(t, pgtest.Options{Name: "dsqlcheck"})
	c.ExecT(t, "postgres", `CREATE TABLE docs (id int PRIMARY KEY, body jsonb, tags text[], amount numeric)`,
		`CREATE TABLE log (at timestamptz, msg text)`, `CREATE PUBLICATION cdcd FOR TABLE docs, log`)
	c.ExecT(t, "postgres", "CREATE DATABASE target")
	// The target has docs without a key, no log, and a checkpoint table
	// of the plain flavor.
	c.ExecT(t, "target", `CREATE TABLE docs (id int, body text, tags text, amount numeric(1000,500))`,
		`CREATE SCHEMA cdcd`, `CREATE TABLE cdcd.checkpoint (name text PRIMARY KEY, seq bigint NOT NULL, end_lsn pg_lsn NOT NULL)`)
	target := c.DSN("target")
	sinkCfg := func(region string) preflight.Sink {
		return preflight.Sink{Name: "dsql", Kind: "postgres", DSN: target, IAM: true,
			Postgres: pgsink.Config{Name: "dsql", DSN: target, Flavor: pgsink.FlavorDSQL, DSQL: pgsink.DSQLConfig{Region: region}}}
	}
	got := run(t, preflight.Config{Source: postgres.Config{DSN: c.DSN("postgres"), Publication: "cdcd", Create: true}, TrailDir: t.TempDir(),
		Sinks: []preflight.Sink{sinkCfg("us-east-1")}})
	require.Equal(t, preflight.Pass, got["sink.dsql.dsql.token"].Status)
	require.Equal(t, preflight.Pass, got["sink.dsql.connect"].Status, "the token opens the (trusting) target")
	require.Equal(t, preflight.Warn, got["sink.dsql.dsql.types"].Status)
	for _, col := range []string{"public.docs.body (jsonb as text)", "public.docs.tags (text[] as text)", "public.docs.amount (numeric without precision as numeric(1000,500))"} {
		require.Contains(t, got["sink.dsql.dsql.types"].Detail, col)
	}
	require.Equal(t, preflight.Warn, got["sink.dsql.dsql.keys"].Status)
	require.Contains(t, got["sink.dsql.dsql.keys"].Detail, "public.log")
	require.Equal(t, preflight.Pass, got["sink.dsql.dsql.statements"].Status)
	requireOnly(t, got, map[string]string{
		"source.replica_identity":    "REPLICA IDENTITY", // public.log: insert-only
		"sink.dsql.tls":              "sslmode=verify-full",
		"sink.dsql.tables":           "schema.create",
		"sink.dsql.dsql.target_keys": "recreate those tables",
		"sink.dsql.checkpoint":       "set checkpoint_table to a new name",
	})
	require.Contains(t, got["sink.dsql.tables"].Detail, "public.log")
	require.Contains(t, got["sink.dsql.dsql.target_keys"].Detail, "public.docs")

	// No region (the host is not a DSQL endpoint): the token cannot be signed.
	got = run(t, preflight.Config{Source: postgres.Config{DSN: c.DSN("postgres"), Publication: "cdcd", Create: true}, TrailDir: t.TempDir(),
		Sinks: []preflight.Sink{sinkCfg("")}})
	require.Equal(t, preflight.Fail, got["sink.dsql.dsql.token"].Status)
	require.Contains(t, got["sink.dsql.dsql.token"].Detail, "set the sink's dsql.region")
	require.NotContains(t, got, "sink.dsql.connect")
}

func TestCitusExtensionMissing(t *testing.T) {
	c := pgtest.StartT(t, pgtest.Options{Name: "cituscheck"})
	c.ExecT(t, "postgres", `CREATE TABLE t (id int PRIMARY KEY)`, `CREATE PUBLICATION cdcd FOR TABLE t`)
	got := run(t, preflight.Config{Source: postgres.Config{DSN: c.DSN("postgres"), Publication: "cdcd", Create: true}, TrailDir: t.TempDir(),
		Sinks: []preflight.Sink{{Name: "citus", Kind: "postgres", DSN: c.DSN("postgres"),
			Postgres: pgsink.Config{Flavor: pgsink.FlavorCitus}}}})
	require.Equal(t, preflight.Fail, got["sink.citus.citus.extension"].Status)
	require.Contains(t, got["sink.citus.citus.extension"].Remedy, "CREATE EXTENSION citus")
}
