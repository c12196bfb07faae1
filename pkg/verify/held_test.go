package verify_test

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/config"
	"github.com/cdcd-io/cdcd/pkg/service"
	"github.com/cdcd-io/cdcd/pkg/verify"
)

// startDaemon runs the cdcd service (snapshot + stream) from src to dst in
// the background of the test and waits until the target holds everything
// committed so far.
func startDaemon(t *testing.T, src, dst *pgtest.Cluster, sink string) *service.Service {
	t.Helper()
	yaml := fmt.Sprintf(`
source: { dsn: %q, create: true, heartbeat: 1s, status_interval: 200ms }
trail: { dir: %q }
snapshot: { mode: initial }
schema: { create: true }
sinks:
  - { name: %s, kind: postgres, dsn: %q, batch: { max_delay: 20ms } }
http: { listen: 127.0.0.1:0 }
`, src.DSN("postgres"), filepath.Join(t.TempDir(), "trail"), sink, dst.DSN("postgres"))
	f, err := config.Parse([]byte(yaml))
	require.NoError(t, err)
	log := slog.New(slog.DiscardHandler)
	svc, err := service.New(f.PipelineConfig(log), f.ServiceConfig(log))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(time.Minute):
			t.Error("service did not stop")
		}
	})
	m := src.MarkerT(t)
	deadline := time.Now().Add(2 * time.Minute)
	for svc.Pipeline().Workers()[0].Stats().Position.EndLSN <= m {
		select {
		case err := <-done:
			t.Fatalf("service stopped: %v", err)
		default:
		}
		require.True(t, time.Now().Before(deadline), "target not caught up: %+v", svc.Report())
		time.Sleep(20 * time.Millisecond)
	}
	return svc
}

// pgbench runs pgbench TPC-B against c until the test ends.
func pgbench(t *testing.T, c *pgtest.Cluster, clients int) {
	t.Helper()
	bin, err := pgtest.BinDir(pgtest.V15)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pgbench"), "-n", "-c", fmt.Sprint(clients), "-T", "600", c.DSN("postgres"))
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
}

func count(t *testing.T, c *pgtest.Cluster, sql string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, c.QueryRow(sql, &n))
	return n
}

// TestHeldVerifyUnderPgbenchLoad verifies a busy database while cdcd
// replicates it: the sink is held at the source snapshot's position just
// long enough to pin the target, so there is no false mismatch — and a
// real one is still found.
func TestHeldVerifyUnderPgbenchLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "blue"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "green", Version: pgtest.V17})
	bin, err := pgtest.BinDir(pgtest.V15)
	require.NoError(t, err)
	out, err := exec.Command(filepath.Join(bin, "pgbench"), "-i", "-s", "1", "-q", src.DSN("postgres")).CombinedOutput()
	require.NoError(t, err, string(out))
	src.ExecT(t, "postgres", `CREATE TABLE canary (id int PRIMARY KEY, v text)`,
		`INSERT INTO canary SELECT g, 'v' || g FROM generate_series(1, 1000) g`)
	svc := startDaemon(t, src, dst, "green")

	pgbench(t, src, 4)
	require.Eventually(t, func() bool { return count(t, src, "SELECT count(*) FROM pgbench_history") > 200 },
		time.Minute, 20*time.Millisecond, "pgbench commits")

	cfg := verify.Config{
		SourceDSN: src.DSN("postgres"), Targets: []verify.Target{{Name: "green", DSN: dst.DSN("postgres")}},
		Daemon: "http://" + svc.Addr(), HoldTimeout: time.Minute, RangeRows: 20000,
	}
	for i := range 3 {
		before := count(t, src, "SELECT count(*) FROM pgbench_history")
		res, _, err := run(t, cfg)
		require.NoError(t, err, "run %d: no false mismatch under load", i)
		require.Equal(t, "held", res.Mode)
		require.True(t, res.Match)
		require.NotEmpty(t, res.Targets[0].Position)
		require.Greater(t, table(t, res, "public.pgbench_history").Rows, before-1)
		require.Nil(t, svc.Pipeline().Workers()[0].CurrentHold(), "the hold is released")
	}
	// Writes never stopped, and replication goes on after the holds.
	before := count(t, src, "SELECT count(*) FROM pgbench_history")
	require.Eventually(t, func() bool { return count(t, dst, "SELECT count(*) FROM pgbench_history") > before },
		time.Minute, 20*time.Millisecond, "the sink applies again after verify")

	// A real difference is still found, and only it.
	dst.ExecT(t, "postgres", `DELETE FROM canary WHERE id = 500`)
	res, out2, err := run(t, cfg)
	require.ErrorIs(t, err, verify.ErrMismatch)
	require.Equal(t, []string{"(id)=(500)"}, table(t, res, "public.canary").Missing)
	for _, x := range res.Targets[0].Tables {
		require.Equal(t, x.Source == "public.canary", !x.Match, out2)
	}

	// Repair under load: held until the range is re-copied, then exact.
	cfg.Repair = true
	_, _, err = run(t, cfg)
	require.ErrorIs(t, err, verify.ErrMismatch)
	cfg.Repair = false
	res, _, err = run(t, cfg)
	require.NoError(t, err)
	require.True(t, res.Match)

	// A sink the daemon does not run is named at once, not waited for.
	cfg.Targets[0].Name = "blue2"
	_, err = verify.Run(testCtx(t), cfg)
	require.ErrorContains(t, err, "has no sink blue2: does it run this configuration?")
	require.Nil(t, svc.Pipeline().Workers()[0].CurrentHold())
}
