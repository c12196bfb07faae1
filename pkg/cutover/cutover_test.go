package cutover_test

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/config"
	"github.com/cdcd-io/cdcd/pkg/cutover"
	"github.com/cdcd-io/cdcd/pkg/service"
	"github.com/cdcd-io/cdcd/pkg/verify"
)

// daemon runs a cdcd service from yaml until stop is called or the test
// ends.
type daemon struct {
	svc  *service.Service
	stop func()
}

func startDaemon(t *testing.T, yaml string) *daemon {
	t.Helper()
	f, err := config.Parse([]byte(yaml))
	require.NoError(t, err)
	log := slog.New(slog.DiscardHandler)
	svc, err := service.New(f.PipelineConfig(log), f.ServiceConfig(log))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	d := &daemon{svc: svc}
	d.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(time.Minute):
				t.Error("service did not stop")
			}
		})
	}
	t.Cleanup(d.stop)
	return d
}

// waitApplied waits until the daemon's first sink is past a marker
// committed on src now.
func (d *daemon) waitApplied(t *testing.T, src *pgtest.Cluster) {
	t.Helper()
	m := src.MarkerT(t)
	require.Eventually(t, func() bool { return d.svc.Pipeline().Workers()[0].Stats().Position.EndLSN > m },
		2*time.Minute, 10*time.Millisecond, "sink not past %s: %+v", m, d.svc.Report())
}

func forwardYAML(t *testing.T, blue, green *pgtest.Cluster) string {
	return fmt.Sprintf(`
source: { dsn: %q, create: true, heartbeat: 1s, status_interval: 200ms }
trail: { dir: %q }
snapshot: { mode: initial }
schema: { create: true }
sinks:
  - { name: green, kind: postgres, dsn: %q, batch: { max_delay: 5ms } }
http: { listen: 127.0.0.1:0 }
`, blue.DSN("postgres"), filepath.Join(t.TempDir(), "trail"), green.DSN("postgres"))
}

func count(t *testing.T, c *pgtest.Cluster, sql string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, c.QueryRow(sql, &n))
	return n
}

func proxyDSN(p *pgtest.Proxy) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port)
}

func setup(t *testing.T) (blue, green *pgtest.Cluster) {
	blue = pgtest.StartT(t, pgtest.Options{Name: "blue"})
	green = pgtest.StartT(t, pgtest.Options{Name: "green", Version: pgtest.V17})
	bin, err := pgtest.BinDir(pgtest.V15)
	require.NoError(t, err)
	out, err := exec.Command(filepath.Join(bin, "pgbench"), "-i", "-s", "1", "-q", blue.DSN("postgres")).CombinedOutput()
	require.NoError(t, err, string(out))
	// Sequence defaults are not created by schema.create: the table
	// with its sequence exists on green beforehand, as a migration
	// would set it up.
	for _, c := range []*pgtest.Cluster{blue, green} {
		c.ExecT(t, "postgres", `CREATE TABLE orders (id bigserial PRIMARY KEY, note text)`)
	}
	blue.ExecT(t, "postgres", `INSERT INTO orders (note) SELECT 'before' FROM generate_series(1, 100)`)
	return blue, green
}

// TestBlueGreenCutoverWithRollback: PG15 blue → PG17 green synced by cdcd,
// pgbench writing to blue through a proxy; the cutover's hook points the
// proxy at green. Every transaction committed on blue is on green, pgbench
// goes on against green, green's sequences are ahead of blue's, and with
// the rollback slot green's writes reach blue.
func TestBlueGreenCutoverWithRollback(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	blue, green := setup(t)
	fwd := startDaemon(t, forwardYAML(t, blue, green))
	fwd.waitApplied(t, blue)

	proxy := pgtest.StartProxyT(t, fmt.Sprintf("127.0.0.1:%d", blue.Port))
	l := pgtest.StartLoadT(t, proxyDSN(proxy), 2)
	require.Eventually(t, func() bool { return count(t, blue, "SELECT count(*) FROM pgbench_history") > 100 },
		time.Minute, 10*time.Millisecond)

	rep, err := cutover.Run(context.Background(), cutover.Config{
		SourceDSN:    blue.DSN("postgres"),
		Targets:      []cutover.Target{{Name: "green", DSN: green.DSN("postgres")}},
		Verify:       cutover.VerifyFull,
		Hook:         fmt.Sprintf("echo 127.0.0.1:%d > %s", green.Port, proxy.BackendFile),
		RollbackSlot: "cdcd_rollback",
	})
	require.NoError(t, err, "%+v", rep)
	require.True(t, rep.Switched)
	for _, s := range rep.Steps {
		t.Logf("%-60s %.3fs  %s", s.Name, s.Seconds, s.Detail)
	}
	t.Logf("write-unavailable %.3fs", rep.WriteUnavailableSeconds)
	require.Greater(t, rep.WriteUnavailableSeconds, 0.0)
	require.Greater(t, rep.RowsVerified, int64(100000))
	require.Equal(t, 1, rep.Sequences)
	require.True(t, rep.Verify.Match)

	// Blue is fenced: what it holds now is everything it committed.
	blueHistory := count(t, blue, "SELECT count(*) FROM pgbench_history")
	blueMax := count(t, blue, "SELECT max(id) FROM orders")
	_, err = pgxExec(blue, "INSERT INTO orders (note) VALUES ('late')")
	require.ErrorContains(t, err, "read-only", "blue takes no writes after the switch")

	// The way back: replication green → blue from the slot made before
	// the switch. The forward pipeline has nothing left to do.
	fwd.stop()
	back := startDaemon(t, fmt.Sprintf(`
source: { dsn: %q, slot: cdcd_rollback, publication: cdcd_rollback, heartbeat: 1s, status_interval: 200ms }
trail: { dir: %q }
tables: { exclude: ["cdcd.*"] }
sinks:
  - { name: blue, kind: postgres, dsn: %q }
http: { listen: "off" }
`, green.DSN("postgres"), filepath.Join(t.TempDir(), "rollback"), blue.DSN("postgres")+"&options=-c%20default_transaction_read_only%3Doff"))

	// pgbench goes on against green.
	require.Eventually(t, func() bool { return count(t, green, "SELECT count(*) FROM pgbench_history") > blueHistory+100 },
		2*time.Minute, 10*time.Millisecond, "pgbench continues on green")
	require.Positive(t, count(t, green, fmt.Sprintf("SELECT count(*) FROM orders WHERE id > %d", blueMax)))
	require.Zero(t, count(t, green, fmt.Sprintf("SELECT count(*) FROM orders WHERE id > %d AND id <= %d", blueMax, blueMax+1000)),
		"green's sequence starts past every value blue issued, plus the gap")
	l.Stop()
	// Each TPC-B transaction adds a history row, each of the others an
	// order (after the 100 made by setup).
	committed := count(t, green, "SELECT (SELECT count(*) FROM pgbench_history) + (SELECT count(*) - 100 FROM orders)")
	require.LessOrEqual(t, l.Processed(), committed, "every transaction pgbench reported committed is on green")
	t.Logf("pgbench reported %d transactions committed; green holds %d", l.Processed(), committed)

	// Green's writes reached blue: the two are identical.
	back.waitApplied(t, green)
	res, err := verify.Run(context.Background(), verify.Config{SourceDSN: green.DSN("postgres"),
		Targets: []verify.Target{{Name: "blue", DSN: blue.DSN("postgres")}}, Publication: "cdcd_rollback"})
	require.NoError(t, err)
	require.True(t, res.Match)
	require.Greater(t, count(t, blue, "SELECT count(*) FROM pgbench_history"), blueHistory, "rollback writes reach blue")
}

// TestFailingHookLeavesBlueWritable: the hook fails, so the source is
// unfenced, pgbench goes on against blue, and the report says why.
func TestFailingHookLeavesBlueWritable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	blue, green := setup(t)
	fwd := startDaemon(t, forwardYAML(t, blue, green))
	fwd.waitApplied(t, blue)
	proxy := pgtest.StartProxyT(t, fmt.Sprintf("127.0.0.1:%d", blue.Port))
	pgtest.StartLoadT(t, proxyDSN(proxy), 2)
	require.Eventually(t, func() bool { return count(t, blue, "SELECT count(*) FROM pgbench_history") > 50 },
		time.Minute, 10*time.Millisecond)

	rep, err := cutover.Run(context.Background(), cutover.Config{
		SourceDSN:    blue.DSN("postgres"),
		Targets:      []cutover.Target{{Name: "green", DSN: green.DSN("postgres")}},
		Hook:         "echo 'load balancer API: 503 Service Unavailable' >&2; exit 3",
		RollbackSlot: "cdcd_rollback",
	})
	require.Error(t, err)
	require.False(t, rep.Switched)
	require.Contains(t, rep.Error, "switch hook")
	require.Contains(t, rep.Error, "exit status 3")
	require.Contains(t, rep.Error, "503 Service Unavailable")
	require.Contains(t, rep.Error, "the source is unfenced and stays in service")
	last := rep.Steps[len(rep.Steps)-1]
	require.Equal(t, "unfence", last.Name)
	require.Empty(t, last.Error)

	_, err = pgxExec(blue, "INSERT INTO orders (note) VALUES ('after a failed cutover')")
	require.NoError(t, err, "blue is writable")
	h := count(t, blue, "SELECT count(*) FROM pgbench_history")
	require.Eventually(t, func() bool { return count(t, blue, "SELECT count(*) FROM pgbench_history") > h+50 },
		time.Minute, 10*time.Millisecond, "pgbench goes on against blue")
	require.Equal(t, fmt.Sprintf("127.0.0.1:%d", blue.Port), proxy.Backend())
	require.Zero(t, count(t, green, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'cdcd_rollback'"),
		"the rollback slot made before the hook is dropped: it would hold green's WAL")
}

func TestBadConfig(t *testing.T) {
	_, err := cutover.Run(context.Background(), cutover.Config{SourceDSN: "x", Targets: []cutover.Target{{Name: "g", DSN: "y"}}})
	require.ErrorContains(t, err, "no switch hook")
	_, err = cutover.Run(context.Background(), cutover.Config{SourceDSN: "x", Targets: []cutover.Target{{Name: "g", DSN: "y"}}, Hook: "true", Verify: "some"})
	require.ErrorContains(t, err, `verify "some"`)
}

// TestVerifyModes: a row that differs on green stops a cutover that
// verifies inside the write pause (blue unfenced, not switched), and
// raises the alert after the switch with --verify=after.
func TestVerifyModes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	blue, green := setup(t)
	fwd := startDaemon(t, forwardYAML(t, blue, green))
	fwd.waitApplied(t, blue)
	green.ExecT(t, "postgres", `DELETE FROM orders WHERE id = 5`)
	cfg := cutover.Config{
		SourceDSN: blue.DSN("postgres"),
		Targets:   []cutover.Target{{Name: "green", DSN: green.DSN("postgres")}},
		Hook:      "true",
	}

	cfg.Verify = cutover.VerifyCounts
	rep, err := cutover.Run(context.Background(), cfg)
	require.Error(t, err)
	require.False(t, rep.Switched)
	require.Contains(t, rep.Error, "verify (counts): public.orders on green differs: (id)=(5)")
	require.Contains(t, rep.Error, "the source is unfenced")
	_, err = pgxExec(blue, "INSERT INTO orders (note) VALUES ('blue still writable')")
	require.NoError(t, err)

	cfg.Verify = cutover.VerifyAfter
	rep, err = cutover.Run(context.Background(), cfg)
	require.Error(t, err)
	require.True(t, rep.Switched, "after: the switch happens first")
	require.Contains(t, rep.Alert, "(id)=(5)")
	require.Contains(t, rep.Alert, "cdcd cutover --back")
	names := []string{}
	for _, s := range rep.Steps {
		names = append(names, s.Name)
	}
	require.Equal(t, []string{"pre-checks", "fence", "drain", "sequences",
		"pin green (snapshot for the verification after the switch)", "switch hook", "verify (after the switch)"}, names)
	_, err = pgxExec(blue, "INSERT INTO orders (note) VALUES ('late')")
	require.ErrorContains(t, err, "read-only", "blue stays fenced after the switch")
}

// TestFenceGraceLetsATransactionInProgressCommit: a transaction open when
// the fence starts commits within fence_grace, reaches green through the
// drain, and its session is ended afterwards.
func TestFenceGraceLetsATransactionInProgressCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	blue, green := setup(t)
	fwd := startDaemon(t, forwardYAML(t, blue, green))
	fwd.waitApplied(t, blue)

	ctx := context.Background()
	app, err := pgx.Connect(ctx, blue.DSN("postgres"))
	require.NoError(t, err)
	defer app.Close(ctx)
	tx, err := app.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "INSERT INTO orders (note) VALUES ('in flight')")
	require.NoError(t, err)

	type result struct {
		rep *cutover.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := cutover.Run(ctx, cutover.Config{
			SourceDSN: blue.DSN("postgres"), Targets: []cutover.Target{{Name: "green", DSN: green.DSN("postgres")}},
			Hook: "true", FenceGrace: time.Minute,
		})
		done <- result{rep, err}
	}()
	// The fence is up (new sessions are read-only) and waits for the
	// transaction.
	require.Eventually(t, func() bool {
		_, err := pgxExec(blue, "INSERT INTO orders (note) VALUES ('new session')")
		return err != nil && strings.Contains(err.Error(), "read-only")
	}, time.Minute, 10*time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("cutover went on without waiting: %+v %v", r.rep, r.err)
	default:
	}
	require.NoError(t, tx.Commit(ctx), "the transaction in progress commits within the grace")
	r := <-done
	require.NoError(t, r.err, "%+v", r.rep)
	require.True(t, r.rep.Switched)
	require.Contains(t, r.rep.Steps[1].Detail, "transactions in progress finished")
	require.Equal(t, int64(1), count(t, green, "SELECT count(*) FROM orders WHERE note = 'in flight'"), "it reached green")
	_, err = app.Exec(ctx, "SELECT 1")
	require.Error(t, err, "its session was ended after the transaction")
}
