package postgres_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
)

// TestFailoverSlot: on a PG17 primary an existing slot without FAILOVER is
// switched to a failover slot at start; source.failover: on against a PG15
// server is refused with the remedy.
func TestFailoverSlot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg17 := pgtest.StartT(t, pgtest.Options{Version: pgtest.V17, Name: "pg17"})
	pg17.ExecT(t, "postgres", `CREATE PUBLICATION cdcd FOR ALL TABLES`,
		`SELECT pg_create_logical_replication_slot('cdcd', 'pgoutput')`)
	open := postgres.NewOpener(postgres.Config{DSN: pg17.DSN("postgres"), SpoolDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	src, _, err := open(ctx)
	require.NoError(t, err)
	_, err = src.Start(ctx, 0)
	require.NoError(t, err)
	require.NoError(t, src.Close())
	var failover bool
	require.NoError(t, pg17.QueryRow(`SELECT failover FROM pg_replication_slots WHERE slot_name = 'cdcd'`, &failover))
	require.True(t, failover, "ALTER_REPLICATION_SLOT turned failover on")

	pg15 := pgtest.StartT(t, pgtest.Options{Name: "pg15"})
	_, _, err = postgres.NewOpener(postgres.Config{DSN: pg15.DSN("postgres"), Failover: "on"}, nil)(ctx)
	require.ErrorContains(t, err, "failover slots need a PostgreSQL 17 primary; set source.failover: auto or off")
	require.True(t, postgres.IsTerminal(err))
}
