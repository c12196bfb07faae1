package postgres_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
)

// pauseReplay stops WAL replay on the standby and waits until it is paused.
func pauseReplay(t *testing.T, standby *pgtest.Cluster) {
	t.Helper()
	standby.ExecT(t, "postgres", `SELECT pg_wal_replay_pause()`)
	require.Eventually(t, func() bool {
		var state string
		return standby.QueryRow(`SELECT pg_get_wal_replay_pause_state()`, &state) == nil && state == "paused"
	}, time.Minute, 20*time.Millisecond, "replay did not pause")
}

// TestPreparePublicationReplayLag is the race behind "create publication
// cdcd on the primary: publication "cdcd" already exists": the publication
// exists on the primary, the standby has not replayed it yet. Prepare must
// find it on the primary and wait for the standby (cancellable), not try to
// create it; once replay resumes it succeeds.
func TestPreparePublicationReplayLag(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	primary := pgtest.StartT(t, pgtest.Options{Version: pgtest.V17})
	standby := primary.StartStandbyT(t, pgtest.Options{})
	pauseReplay(t, standby)
	primary.ExecT(t, "postgres", `CREATE PUBLICATION cdcd FOR ALL TABLES`)
	cfg := postgres.Config{DSN: standby.DSN("postgres"), PrimaryDSN: primary.DSN("postgres"), Create: true}
	log := slog.New(slog.DiscardHandler)

	src, err := postgres.Connect(ctx, cfg, log)
	require.NoError(t, err)
	require.True(t, src.Standby)
	// The deadline is the thing under test: the wait ends with ctx.
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
	_, _, err = src.Prepare(wctx)
	wcancel()
	src.Close()
	require.ErrorIs(t, err, context.DeadlineExceeded, "Prepare waits for the standby to replay the publication")
	require.Contains(t, err.Error(), "wait for the standby to replay publication cdcd")
	require.False(t, postgres.IsTerminal(err), "a cancelled wait is retried")

	standby.ExecT(t, "postgres", `SELECT pg_wal_replay_resume()`)
	src, err = postgres.Connect(ctx, cfg, log)
	require.NoError(t, err)
	defer src.Close()
	info, created, err := src.Prepare(ctx)
	require.NoError(t, err)
	require.True(t, created, "the slot is created")
	require.True(t, info.Exists)
}

// TestPublicationOnPrimaryAlreadyExists: a create that loses the race to
// another creator (SQLSTATE 42710 duplicate_object) counts as success, and
// the standby is waited for.
func TestPublicationOnPrimaryAlreadyExists(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	primary := pgtest.StartT(t, pgtest.Options{Version: pgtest.V17})
	standby := primary.StartStandbyT(t, pgtest.Options{})
	conn, err := pgx.Connect(ctx, standby.DSN("postgres"))
	require.NoError(t, err)
	defer conn.Close(context.Background())

	calls := 0
	created, err := postgres.PublicationOnPrimary(ctx, conn, primary.DSN("postgres"), "raced",
		func(ctx context.Context, p *pgx.Conn) error {
			calls++
			// Another cdcd creates it first; ours then fails with 42710.
			if _, err := p.Exec(ctx, `CREATE PUBLICATION raced FOR ALL TABLES`); err != nil {
				return err
			}
			_, err := p.Exec(ctx, `CREATE PUBLICATION raced FOR ALL TABLES`)
			return err
		})
	require.NoError(t, err, "already exists is success")
	require.False(t, created)
	require.Equal(t, 1, calls)
	exists, err := postgres.PublicationExists(ctx, conn, "raced")
	require.NoError(t, err)
	require.True(t, exists, "the standby replayed it before PublicationOnPrimary returned")

	// Existing on the primary: create is not called, the standby is waited for.
	pauseReplay(t, standby)
	primary.ExecT(t, "postgres", `CREATE PUBLICATION later FOR ALL TABLES`)
	wctx, wcancel := context.WithTimeout(ctx, time.Second)
	_, err = postgres.PublicationOnPrimary(wctx, conn, primary.DSN("postgres"), "later",
		func(context.Context, *pgx.Conn) error {
			t.Error("create called for an existing publication")
			return nil
		})
	wcancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, err.Error(), "publication later")
}
