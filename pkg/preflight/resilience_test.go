package preflight_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/preflight"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
)

// TestCheckFailoverStandby: for a PG17 primary, `cdcd check` looks at every
// other host of a multi-host source.dsn and names the standby setting that
// keeps it from synchronizing cdcd's failover slot.
func TestCheckFailoverStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	primary := pgtest.StartT(t, pgtest.Options{Version: pgtest.V17, Name: "primary"})
	standby := primary.StartStandbyT(t, pgtest.Options{})
	primary.ExecT(t, "postgres", `CREATE PUBLICATION cdcd FOR ALL TABLES`)
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/postgres?sslmode=disable&target_session_attrs=read-write", primary.Port, standby.Port)
	cfg := preflight.Config{Source: postgres.Config{DSN: dsn, Create: true}, TrailDir: t.TempDir(), AckApplied: true}
	host := fmt.Sprintf("source.failover.standby[127.0.0.1:%d]", standby.Port)

	got := run(t, cfg)
	requireOnly(t, got, map[string]string{host: "ALTER SYSTEM SET sync_replication_slots = on"})
	require.Contains(t, got[host].Detail, "sync_replication_slots is off")
	require.Contains(t, got[host].Detail, "primary_conninfo names no dbname")
	require.Equal(t, preflight.Warn, got["source.failover.synchronized_standby_slots"].Status)
	require.Contains(t, got["capture.ack"].Detail, "source keeps WAL while any sink is behind")
	require.Equal(t, preflight.Pass, got["source.streaming"].Status)

	standby.ExecT(t, "postgres", `ALTER SYSTEM SET sync_replication_slots = on`,
		fmt.Sprintf(`ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=%d user=postgres dbname=postgres'`, primary.Port),
		`SELECT pg_reload_conf()`)
	got = run(t, cfg)
	requireOnly(t, got, nil)
	require.Equal(t, preflight.Warn, got[host].Status, "settings right, slot not synchronized yet: %s", got[host].Detail)

	cfg.Source.DSN = primary.DSN("postgres")
	got = run(t, cfg)
	require.Equal(t, preflight.Warn, got["source.failover.hosts"].Status)
	require.Contains(t, got["source.failover.hosts"].Remedy, "target_session_attrs=read-write")
}
