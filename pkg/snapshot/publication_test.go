package snapshot_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/mapping"
	"github.com/cdcd-io/cdcd/pkg/snapshot"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
)

// TestPreparePublicationStandbyReplayLag: on a standby whose replay is
// paused, the row-filtered publication is created on the primary and the
// wait for the standby ends with ctx (not after a silent 30s); a second
// attempt finds it on the primary instead of failing with "already
// exists"; once replay resumes, the publication is there and checked.
func TestPreparePublicationStandbyReplayLag(t *testing.T) {
	if testing.Short() {
		t.Skip("real servers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	primary := pgtest.StartT(t, pgtest.Options{Version: pgtest.V17})
	primary.ExecT(t, "postgres", `CREATE TABLE employee (id int PRIMARY KEY, department text)`,
		`ALTER TABLE employee REPLICA IDENTITY FULL`)
	standby := primary.StartStandbyT(t, pgtest.Options{})
	standby.ExecT(t, "postgres", `SELECT pg_wal_replay_pause()`)
	require.Eventually(t, func() bool {
		var state string
		return standby.QueryRow(`SELECT pg_get_wal_replay_pause_state()`, &state) == nil && state == "paused"
	}, time.Minute, 20*time.Millisecond, "replay did not pause")

	m, err := mapping.New(mapping.Config{Tables: []mapping.Table{{From: "public.employee", Where: "department <> 'test'"}}})
	require.NoError(t, err)
	cfg := postgres.Config{DSN: standby.DSN("postgres"), PrimaryDSN: primary.DSN("postgres"), Create: true}
	log := slog.New(slog.DiscardHandler)
	prepare := func(timeout time.Duration) error {
		pctx, pcancel := context.WithTimeout(ctx, timeout)
		defer pcancel()
		return snapshot.PreparePublication(pctx, cfg, m, log)
	}

	// The deadlines are what is under test: the waits end with ctx.
	err = prepare(2 * time.Second)
	require.ErrorIs(t, err, context.DeadlineExceeded, "created on the primary, waiting for the standby")
	require.Contains(t, err.Error(), "publication cdcd")
	var filter string
	require.NoError(t, primary.QueryRow(`SELECT rowfilter FROM pg_publication_tables WHERE pubname = 'cdcd' AND tablename = 'employee'`, &filter))
	require.Contains(t, filter, "department")

	err = prepare(2 * time.Second)
	require.ErrorIs(t, err, context.DeadlineExceeded, "found on the primary: no second create")

	standby.ExecT(t, "postgres", `SELECT pg_wal_replay_resume()`)
	require.NoError(t, prepare(time.Minute))
	require.NoError(t, standby.QueryRow(`SELECT rowfilter FROM pg_publication_tables WHERE pubname = 'cdcd' AND tablename = 'employee'`, &filter))
	require.Contains(t, filter, "department")
}
