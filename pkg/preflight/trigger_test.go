package preflight_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/preflight"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

// TestCheckTrigger: for a trigger-table source, `cdcd check` reports the
// change log and triggers (or the right to create them), keys, and the
// change log's size and age, and no slot or publication checks.
func TestCheckTrigger(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source", Conf: map[string]string{"wal_level": "replica", "track_commit_timestamp": "on"}})
	src.ExecT(t, "postgres",
		`CREATE TABLE orders (id int PRIMARY KEY, note text)`,
		`CREATE TABLE audit (at timestamptz, what text)`,
		`CREATE ROLE weak LOGIN`)
	noAudit := func(schema, table string) bool { return table != "audit" }
	good := func() preflight.Config {
		return preflight.Config{
			Trigger:  &preflight.Trigger{DSN: src.DSN("postgres"), Include: noAudit, Create: true},
			TrailDir: t.TempDir(),
		}
	}

	t.Run("not installed, create: true", func(t *testing.T) {
		got := run(t, good())
		requireOnly(t, got, nil)
		for name := range got {
			require.False(t, strings.Contains(name, "slot") || strings.Contains(name, "publication") || strings.Contains(name, "wal_level"), name)
		}
		require.Contains(t, got["source.change_log"].Detail, "will install it on start")
		require.Contains(t, got["source.triggers"].Detail, "1 of 1 included tables lack cdcd triggers; cdcd will install them")
		require.Contains(t, got["source.keys"].Detail, "all 1 included tables have a primary key")
		require.NotContains(t, got, "source.change_log_size", "nothing to measure yet")
	})
	t.Run("not installed, create: false", func(t *testing.T) {
		cfg := good()
		cfg.Trigger.Create = false
		requireOnly(t, run(t, cfg), map[string]string{
			"source.change_log": "cdcd trigger install --config FILE",
			"source.triggers":   "cdcd trigger install --config FILE",
		})
	})
	t.Run("a table without a key", func(t *testing.T) {
		cfg := good()
		cfg.Trigger.Include = nil
		got := run(t, cfg)
		requireOnly(t, got, map[string]string{"source.keys": "source.allow_keyless: true"})
		require.Contains(t, got["source.keys"].Detail, "public.audit")
		cfg.Trigger.AllowKeyless = true
		got = run(t, cfg)
		requireOnly(t, got, nil)
		require.Contains(t, got["source.keys"].Detail, "whole old rows")
	})
	t.Run("a role without the right to create", func(t *testing.T) {
		cfg := good()
		cfg.Trigger.DSN = dsnAs(src, "weak")
		got := run(t, cfg)
		requireOnly(t, got, map[string]string{
			"source.change_log": "GRANT CREATE ON DATABASE postgres TO weak",
			"source.triggers":   "GRANT TRIGGER ON each table TO weak",
		})
	})
	t.Run("no table included", func(t *testing.T) {
		cfg := good()
		cfg.Trigger.Include = func(string, string) bool { return false }
		requireOnly(t, run(t, cfg), map[string]string{"source.triggers": "tables.include"})
	})

	ctx := context.Background()
	conn := connectT(t, src.DSN("postgres"))
	require.NoError(t, trigger.Install(ctx, conn, []trigger.Table{{Schema: "public", Name: "orders"}}, trigger.Options{}))

	t.Run("installed", func(t *testing.T) {
		cfg := good()
		cfg.Trigger.Create = false
		got := run(t, cfg)
		requireOnly(t, got, nil)
		require.Contains(t, got["source.change_log"].Detail, "exists")
		require.Contains(t, got["source.triggers"].Detail, "all 1 included tables have their cdcd triggers")
		require.Equal(t, preflight.Pass, got["source.change_log_size"].Status)
		require.Contains(t, got["source.change_log_age"].Detail, "empty")
	})
	t.Run("installed, but the role may not read it", func(t *testing.T) {
		cfg := good()
		cfg.Trigger.DSN = dsnAs(src, "weak")
		got := run(t, cfg)
		require.Equal(t, preflight.Fail, got["source.change_log"].Status)
		require.Contains(t, got["source.change_log"].Remedy, "GRANT SELECT, DELETE ON cdcd.change_log TO weak")
	})
	t.Run("a disabled trigger", func(t *testing.T) {
		src.ExecT(t, "postgres", `ALTER TABLE orders DISABLE TRIGGER cdcd_update`)
		defer src.ExecT(t, "postgres", `ALTER TABLE orders ENABLE TRIGGER cdcd_update`)
		requireOnly(t, run(t, good()), map[string]string{"source.triggers": "ENABLE TRIGGER"})
	})
	t.Run("a stopped cdcd: the log grows and ages", func(t *testing.T) {
		src.ExecT(t, "postgres", `INSERT INTO orders SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g`, `ANALYZE cdcd.change_log`)
		cfg := good()
		cfg.Trigger.WarnBytes = 1 << 20
		cfg.Trigger.AlertBytes = 1 << 40
		got := run(t, cfg)
		requireOnly(t, got, nil)
		require.Equal(t, preflight.Warn, got["source.change_log_size"].Status)
		require.Contains(t, got["source.change_log_size"].Detail, "past wal_guard.warn_bytes")
		require.Equal(t, preflight.Pass, got["source.change_log_age"].Status, "young")

		cfg.Trigger.AlertBytes = 2 << 20
		cfg.Trigger.MaxAge = 1 // any committed row is older than 1ns
		got = run(t, cfg)
		require.Equal(t, preflight.Warn, got["source.change_log_size"].Status)
		require.Contains(t, got["source.change_log_size"].Detail, "past wal_guard.alert_bytes")
		require.Equal(t, preflight.Warn, got["source.change_log_age"].Status)
		require.Contains(t, got["source.change_log_age"].Detail, "the oldest change row is")
		require.Contains(t, got["source.change_log_age"].Remedy, "start cdcd")
	})
}

func connectT(t *testing.T, dsn string) *pgx.Conn {
	conn, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
