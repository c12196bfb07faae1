package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/config"
	"github.com/cdcd-io/cdcd/pkg/service"
	"github.com/cdcd-io/cdcd/pkg/status"
)

// syncBuffer collects logs written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if os.Getenv("CDCD_TEST_LOG") != "" {
		os.Stderr.Write(p)
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func yamlConfig(src, dst *pgtest.Cluster, trailDir, extra string) string {
	return fmt.Sprintf(`
source:
  dsn: %q
  create: true
  heartbeat: 1s
  status_interval: 200ms
trail:
  dir: %q
  segment_bytes: 1MiB
sinks:
  - name: target
    kind: postgres
    dsn: %q
    batch: { max_delay: 20ms }
http:
  listen: 127.0.0.1:0
`, src.DSN("postgres"), trailDir, dst.DSN("postgres")) + extra
}

type running struct {
	svc  *service.Service
	logs *syncBuffer
	stop context.CancelFunc
	done chan error
}

func start(t *testing.T, yaml string) *running {
	t.Helper()
	f, err := config.Parse([]byte(yaml))
	require.NoError(t, err)
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc, err := service.New(f.PipelineConfig(log), f.ServiceConfig(log))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{svc: svc, logs: logs, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(time.Minute):
			t.Error("service did not stop")
		}
	})
	require.Eventually(t, func() bool { return svc.Addr() != "" }, 10*time.Second, 10*time.Millisecond, "endpoint not listening")
	return r
}

func (r *running) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + r.svc.Addr() + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func (r *running) status(t *testing.T) *status.Report {
	t.Helper()
	code, body := r.get(t, "/status")
	require.Equal(t, 200, code)
	var rep status.Report
	require.NoError(t, json.Unmarshal([]byte(body), &rep))
	return &rep
}

// waitFor polls cond until it holds or the timeout passes.
func (r *running) waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("service stopped while waiting for %s: %v\nlogs:\n%s", what, err, r.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s; status: %+v\nlogs:\n%s", what, timeout, r.svc.Report(), r.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metric returns the value of a series written with its labels as in the
// exposition format (e.g. `cdcd_sink_lag_bytes{sink="target"}`), -1 when
// absent.
func metric(body, prefix string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix+" ") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// notifySocket listens like systemd on a unixgram socket and returns the
// messages received so far.
func notifySocket(t *testing.T) func() []string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sd")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	var mu sync.Mutex
	var msgs []string
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			msgs = append(msgs, string(buf[:n]))
			mu.Unlock()
		}
	}()
	t.Setenv("NOTIFY_SOCKET", path)
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), msgs...)
	}
}

func count(msgs []string, s string) int {
	n := 0
	for _, m := range msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

// holdTable locks a target table until the returned func is called: the
// sink's next batch on it blocks, as with a hung target.
func holdTable(t *testing.T, c *pgtest.Cluster, table string) func() {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	require.NoError(t, err)
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)
	var once sync.Once
	release := func() {
		once.Do(func() {
			_ = tx.Rollback(ctx)
			conn.Close(ctx)
		})
	}
	t.Cleanup(release)
	return release
}

// TestEndpointsMetricsReadinessNotify runs the daemon service against real
// servers: systemd gets READY=1 after the first connect and WATCHDOG=1
// pings; /metrics series move with a workload; /readyz flips to 503 when a
// held sink falls behind past ready_max_lag and back to 200 once it catches
// up; /status shows positions and lag throughout.
func TestEndpointsMetricsReadinessNotify(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	schema := `CREATE TABLE items (id int PRIMARY KEY, qty int, note text)`
	src.ExecT(t, "postgres", schema)
	dst.ExecT(t, "postgres", schema)

	msgs := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "300000") // 300ms: a ping every 100ms
	r := start(t, yamlConfig(src, dst, t.TempDir(), `
  ready_max_lag: 1s
wal_guard: { interval: 100ms }
`))

	code, body := r.get(t, "/healthz")
	require.Equal(t, 200, code, body)
	r.waitFor(t, "READY=1", 30*time.Second, func() bool { return count(msgs(), "READY=1") == 1 })
	r.waitFor(t, "watchdog pings", 10*time.Second, func() bool { return count(msgs(), "WATCHDOG=1") >= 3 })
	r.waitFor(t, "readiness", 30*time.Second, func() bool { c, _ := r.get(t, "/readyz"); return c == 200 })

	// A workload moves the counters. Every scrape reads the slot first, so
	// cdcd_source_wal_lsn moves with the workload, whatever wal_guard's
	// interval and the machine's load.
	_, before := r.get(t, "/metrics")
	src.ExecT(t, "postgres", `INSERT INTO items SELECT g, g, 'n' FROM generate_series(1, 500) g`,
		`UPDATE items SET qty = qty + 1 WHERE id <= 100`, `DELETE FROM items WHERE id > 450`)
	m := src.MarkerT(t)
	r.waitFor(t, "the sink to apply the workload", 30*time.Second, func() bool {
		return r.svc.Pipeline().Workers()[0].Stats().Position.EndLSN > m
	})
	_, after := r.get(t, "/metrics")
	for _, s := range []struct {
		series string
		delta  float64
	}{
		{`cdcd_capture_events_total{op="insert",table="public.items"}`, 500},
		{`cdcd_capture_events_total{op="update",table="public.items"}`, 100},
		{`cdcd_capture_events_total{op="delete",table="public.items"}`, 50},
		{`cdcd_sink_events_total{op="insert",sink="target",table="public.items"}`, 500},
		{`cdcd_sink_events_total{op="delete",sink="target",table="public.items"}`, 50},
		{`cdcd_capture_transactions_total`, 3},
		{`cdcd_capture_trail_fsyncs_total`, 1},
		{`cdcd_capture_trail_fsync_seconds_total`, 0.000001},
		{`cdcd_sink_rows_total{sink="target"}`, 650},
		{`cdcd_sink_batch_rows_count{sink="target"}`, 1},
		{`cdcd_sink_batch_duration_seconds_count{sink="target"}`, 1},
		{`cdcd_capture_position_lsn`, 1},
		{`cdcd_source_wal_lsn`, 1},
	} {
		b, a := max(metric(before, s.series), 0), metric(after, s.series)
		require.GreaterOrEqual(t, a-b, s.delta, "%s moved from %v to %v", s.series, b, a)
	}
	for _, s := range []string{"cdcd_trail_bytes", "cdcd_trail_segments", "cdcd_source_slot_retained_wal_bytes", `cdcd_source_slot_wal_status{wal_status="reserved"}`, "cdcd_ready"} {
		require.Greater(t, metric(after, s), 0.0, s)
	}
	for _, s := range []string{"cdcd_capture_reconnects_total", "cdcd_capture_forwarded_total", "cdcd_capture_withdrawn_total", `cdcd_sink_errors_total{sink="target"}`, "cdcd_wal_guard_level"} {
		require.Equal(t, 0.0, metric(after, s), "%s present and zero", s)
	}
	for _, s := range []string{`cdcd_sink_lag_seconds{sink="target"}`, `cdcd_sink_lag_transactions{sink="target"}`, "cdcd_capture_lag_bytes", "cdcd_capture_lag_seconds"} {
		require.GreaterOrEqual(t, metric(after, s), 0.0, "%s present", s)
	}

	// Hold the sink down while the source writes: lag grows, /readyz fails.
	release := holdTable(t, dst, "items")
	src.ExecT(t, "postgres", `UPDATE items SET qty = qty + 1 WHERE id <= 10`)
	for i := 0; i < 5; i++ {
		src.ExecT(t, "postgres", fmt.Sprintf(`INSERT INTO items VALUES (%d, 1, 'held')`, 1000+i))
	}
	r.waitFor(t, "/readyz 503", 30*time.Second, func() bool { c, _ := r.get(t, "/readyz"); return c == 503 })
	_, body = r.get(t, "/readyz")
	require.Contains(t, body, "sink target is")
	require.Contains(t, body, "behind the source (ready_max_lag 1s)")
	rep := r.status(t)
	require.True(t, rep.Running)
	require.False(t, rep.Ready)
	require.Len(t, rep.Sinks, 1)
	k := rep.Sinks[0]
	require.Greater(t, k.LagBytes, int64(0))
	require.Greater(t, k.LagSeconds, 1.0)
	require.GreaterOrEqual(t, k.LagTransactions, int64(5), "the held transactions are counted")
	require.Less(t, rep.Capture.LagSeconds, 1.0, "capture is not held: only the sink lags")
	_, held := r.get(t, "/metrics")
	require.Greater(t, metric(held, `cdcd_sink_lag_bytes{sink="target"}`), 0.0)
	require.Greater(t, metric(held, `cdcd_sink_lag_seconds{sink="target"}`), 1.0)
	require.Equal(t, 0.0, metric(held, "cdcd_ready"))
	var tbl bytes.Buffer
	require.NoError(t, rep.WriteTable(&tbl))
	require.Regexp(t, regexp.MustCompile(`sink target\s+\S+\s+\S+ \S+ / \S+\s+\d+ tx behind`), tbl.String())
	t.Logf("status while the sink is held:\n%s", tbl.String())

	release()
	r.waitFor(t, "/readyz 200 after the sink caught up", 30*time.Second, func() bool { c, _ := r.get(t, "/readyz"); return c == 200 })
	// Ready means within ready_max_lag, not drained: wait for the last
	// held transactions to be applied.
	r.waitFor(t, "no transaction behind", 30*time.Second, func() bool { return r.status(t).Sinks[0].LagTransactions == 0 })

	r.stop()
	require.NoError(t, <-r.done)
	r.done <- nil
	// The datagram may still be in the socket.
	require.Eventually(t, func() bool { return count(msgs(), "STOPPING=1") > 0 }, 5*time.Second, 10*time.Millisecond, "STOPPING=1")
	require.Equal(t, 1, count(msgs(), "STOPPING=1"))
	require.Equal(t, 1, count(msgs(), "READY=1"), "READY once")
}

// TestReportsReadTheSlot: with a guard interval far longer than the test,
// the guard's only periodic read happens at start, before capture created
// the slot. /status and /metrics still show the slot and the source's
// current WAL position, because serving them reads the slot.
func TestReportsReadTheSlot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	schema := `CREATE TABLE items (id int PRIMARY KEY, qty int, note text)`
	src.ExecT(t, "postgres", schema)
	dst.ExecT(t, "postgres", schema)
	r := start(t, yamlConfig(src, dst, t.TempDir(), `
wal_guard: { interval: 1h }
`))
	r.waitFor(t, "readiness", 30*time.Second, func() bool { c, _ := r.get(t, "/readyz"); return c == 200 })

	rep := r.status(t)
	require.Empty(t, rep.Slot.Error)
	require.True(t, rep.Slot.Exists, "the slot capture created before it became ready")
	require.True(t, rep.Slot.Active)
	_, before := r.get(t, "/metrics")
	src.ExecT(t, "postgres", `INSERT INTO items SELECT g, g, 'n' FROM generate_series(1, 100) g`)
	_, after := r.get(t, "/metrics")
	b, a := metric(before, "cdcd_source_wal_lsn"), metric(after, "cdcd_source_wal_lsn")
	require.Greater(t, b, 0.0)
	require.Greater(t, a, b, "cdcd_source_wal_lsn is read at scrape time")
}

// TestWALGuard holds the sink down while the source writes, with a
// long-running transaction open on the source (which pins the slot's
// restart_lsn, as it does in production): the guard warns, then alerts, in
// logs and metrics; once max_slot_wal_keep_size is exceeded and a
// checkpoint removes the WAL, the slot is invalidated and cdcd stops with a
// clear error — and never re-creates the slot, not even on a restart.
func TestWALGuard(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source", Conf: map[string]string{"max_slot_wal_keep_size": "64MB"}})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	schema := `CREATE TABLE items (id int PRIMARY KEY, note text)`
	src.ExecT(t, "postgres", schema)
	dst.ExecT(t, "postgres", schema)
	trailDir := t.TempDir()
	cfg := yamlConfig(src, dst, trailDir, `
wal_guard: { interval: 100ms, warn_bytes: 8MiB, alert_bytes: 40MiB }
`)
	r := start(t, cfg)
	r.waitFor(t, "readiness", 30*time.Second, func() bool { c, _ := r.get(t, "/readyz"); return c == 200 })

	// The sink is down, and a transaction stays open on the source.
	release := holdTable(t, dst, "items")
	ctx := context.Background()
	open, err := pgx.Connect(ctx, src.DSN("postgres"))
	require.NoError(t, err)
	defer open.Close(ctx)
	_, err = open.Exec(ctx, `BEGIN; INSERT INTO items VALUES (0, 'open')`)
	require.NoError(t, err)

	// Every round writes a row and switches to a new 16 MiB WAL segment.
	write := func(rounds int) {
		for i := 0; i < rounds; i++ {
			src.ExecT(t, "postgres", fmt.Sprintf(`INSERT INTO items VALUES (%d, 'x')`, time.Now().UnixNano()%1e9), `SELECT pg_switch_wal()`)
		}
	}
	level := func() float64 { _, b := r.get(t, "/metrics"); return metric(b, "cdcd_wal_guard_level") }
	write(1)
	r.waitFor(t, "the guard to warn", 30*time.Second, func() bool { return level() == 1 })
	require.Contains(t, r.logs.String(), `"level":"WARN","msg":"WAL guard: the slot retains`)
	write(3)
	r.waitFor(t, "the guard to alert", 30*time.Second, func() bool { return level() == 2 })
	require.Contains(t, r.logs.String(), `"level":"ERROR","msg":"WAL guard ALERT:`)
	rep := r.status(t)
	require.Equal(t, "alert", rep.Slot.Guard)
	require.Greater(t, rep.Slot.RetainedWALBytes, int64(40<<20))
	_, body := r.get(t, "/metrics")
	require.Equal(t, 1.0, metric(body, `cdcd_wal_guard_events_total{level="warn"}`))
	require.Equal(t, 1.0, metric(body, `cdcd_wal_guard_events_total{level="alert"}`))
	require.Greater(t, metric(body, "cdcd_source_slot_retained_wal_bytes"), float64(40<<20))

	// Past max_slot_wal_keep_size: the next checkpoint invalidates the slot.
	write(4)
	src.ExecT(t, "postgres", `CHECKPOINT`)
	r.waitFor(t, "the guard to find the slot lost", 30*time.Second, func() bool {
		return strings.Contains(r.logs.String(), "WAL guard: replication slot invalidated")
	})
	// Shutdown drains the sink's in-flight batch: let the target go.
	release()
	var runErr error
	select {
	case runErr = <-r.done:
		r.done <- runErr
	case <-time.After(30 * time.Second):
		t.Fatalf("cdcd did not stop on an invalidated slot; logs:\n%s", r.logs.String())
	}
	require.Error(t, runErr)
	require.Contains(t, runErr.Error(), "invalidated")
	require.Contains(t, runErr.Error(), "re-synchronise")
	require.NotContains(t, runErr.Error(), "\n")
	t.Logf("stopped with: %v", runErr)

	var walStatus string
	require.NoError(t, src.QueryRow(`SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'cdcd'`, &walStatus))
	require.Equal(t, "lost", walStatus, "the slot is left as it is, for the operator")

	// A restart refuses too, and leaves the slot alone.
	f, err := config.Parse([]byte(cfg))
	require.NoError(t, err)
	quiet := slog.New(slog.DiscardHandler)
	svc, err := service.New(f.PipelineConfig(quiet), f.ServiceConfig(quiet))
	require.NoError(t, err)
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = svc.Run(rctx)
	require.Error(t, err)
	require.Contains(t, err.Error(), "invalidated")
	require.NoError(t, src.QueryRow(`SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'cdcd'`, &walStatus))
	require.Equal(t, "lost", walStatus, "not re-created")
}
