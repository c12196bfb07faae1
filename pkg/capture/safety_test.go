package capture_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/capture"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/source"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// TestCaptureLargeTransactionFlatMemory streams one 200,000-row transaction
// and samples the heap meanwhile: capture must not hold the transaction.
func TestCaptureLargeTransactionFlatMemory(t *testing.T) {
	pg := pgtest.StartT(t, pgtest.Options{})
	pg.ExecT(t, "postgres", `CREATE TABLE big (id int PRIMARY KEY, pad text)`)
	dir := t.TempDir()
	r := startCapture(t, testConfig(pg, dir))
	waitSlot(t, pg)

	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	// 200,000 rows of ~250 bytes: ~50 MB of row data in one transaction.
	pg.ExecT(t, "postgres", `INSERT INTO big SELECT g, repeat(md5(g::text), 7) FROM generate_series(1, 200000) g`)
	r.waitPast(t, marker(t, pg), 2*time.Minute)
	close(stop)
	wg.Wait()
	r.stop(t)

	txs := readTrail(t, dir)
	var rows int
	for _, tx := range txs {
		for _, c := range tx.changes {
			if c.Op == change.OpInsert {
				rows++
			}
		}
	}
	require.Equal(t, 200000, rows)
	t.Logf("peak heap in use while capturing: %.1f MiB", float64(peak.Load())/(1<<20))
	require.Less(t, peak.Load(), uint64(40<<20), "heap must stay flat, far below the 50 MB transaction")
}

// TestCaptureIdleSlotAdvances: with no writes at all, heartbeats keep the
// slot's confirmed_flush_lsn moving so the source can recycle WAL.
func TestCaptureIdleSlotAdvances(t *testing.T) {
	pg := pgtest.StartT(t, pgtest.Options{})
	cfg := testConfig(pg, t.TempDir())
	cfg.Source.Heartbeat = 200 * time.Millisecond
	startCapture(t, cfg)
	waitSlot(t, pg)
	first := confirmedFlush(t, pg)
	require.Eventually(t, func() bool {
		// Not confirmedFlush: require must not fail from this goroutine.
		var s *string
		if err := query(pg, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'cdcd'", &s); err != nil || s == nil {
			return false
		}
		l, err := change.ParseLSN(*s)
		return err == nil && l > first
	}, 20*time.Second, 100*time.Millisecond, "confirmed_flush_lsn stuck at %s on an idle source", first)
}

func confirmedFlush(t testing.TB, c *pgtest.Cluster) change.LSN {
	t.Helper()
	var s *string
	require.NoError(t, query(c, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'cdcd'", &s))
	if s == nil {
		return 0
	}
	l, err := change.ParseLSN(*s)
	require.NoError(t, err)
	return l
}

// TestCaptureRefusesSlotAhead: a slot moved past what the trail holds means
// acknowledged data was never stored; capture must stop, loudly.
func TestCaptureRefusesSlotAhead(t *testing.T) {
	pg := pgtest.StartT(t, pgtest.Options{})
	pg.ExecT(t, "postgres", `CREATE TABLE t (id int PRIMARY KEY)`)
	dir := t.TempDir()
	cfg := testConfig(pg, dir)
	cfg.Source.Heartbeat = -1
	r := startCapture(t, cfg)
	waitSlot(t, pg)
	pg.ExecT(t, "postgres", `INSERT INTO t VALUES (1)`)
	r.waitPast(t, marker(t, pg), 30*time.Second)
	r.stop(t)

	pg.ExecT(t, "postgres", `INSERT INTO t VALUES (2)`, `INSERT INTO t VALUES (3)`,
		`SELECT pg_replication_slot_advance('cdcd', pg_current_wal_lsn())`)
	c, err := capture.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.Run(ctx)
	require.ErrorIs(t, err, capture.ErrSlotAhead)
	require.Contains(t, err.Error(), "confirmed_flush_lsn")
}

// TestCaptureRefusesOtherCluster: a trail belongs to one source cluster.
func TestCaptureRefusesOtherCluster(t *testing.T) {
	a := pgtest.StartT(t, pgtest.Options{Name: "a"})
	b := pgtest.StartT(t, pgtest.Options{Name: "b"})
	dir := t.TempDir()
	r := startCapture(t, testConfig(a, dir))
	waitSlot(t, a)
	r.waitPast(t, marker(t, a), 30*time.Second)
	r.stop(t)

	c, err := capture.New(testConfig(b, dir))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.Run(ctx)
	require.ErrorIs(t, err, trail.ErrSystemIDMismatch)
}

// TestCaptureMissingSlotIsTerminal: without create, a missing slot is one
// clear error naming it and the remedy, not an endless reconnect loop.
func TestCaptureMissingSlotIsTerminal(t *testing.T) {
	pg := pgtest.StartT(t, pgtest.Options{})
	pg.ExecT(t, "postgres", `CREATE PUBLICATION cdcd FOR ALL TABLES`)
	cfg := testConfig(pg, t.TempDir())
	cfg.Source.Create = false
	cfg.Source.Slot = "nope"
	c, err := capture.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.Run(ctx)
	require.Error(t, err)
	require.Contains(t, err.Error(), "replication slot nope does not exist")
	require.Contains(t, err.Error(), "source.create")
	require.NoError(t, ctx.Err(), "returned at once, no retry loop")
}

// TestCaptureCrashSafety SIGKILLs the cdcd process repeatedly while a writer
// commits numbered rows; the trail must then hold every committed row
// exactly once, in commit order.
func TestCaptureCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the cdcd binary")
	}
	pg := pgtest.StartT(t, pgtest.Options{})
	pg.ExecT(t, "postgres", `CREATE TABLE numbered (n int PRIMARY KEY, pad text)`)
	bin := buildCdcd(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(t.TempDir(), "cdcd.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
source:
  dsn: %q
  create: true
  heartbeat: 500ms
  status_interval: 100ms
trail:
  dir: %q
  segment_bytes: 256KiB
log:
  format: text
`, pg.DSN("postgres"), dir)), 0o600))

	// The slot must exist before the first row is committed.
	first := cdcdCmd(bin, cfgPath, filepath.Join(t.TempDir(), "first.log"))
	require.NoError(t, first.Start())
	waitSlot(t, pg)
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()

	// The writer commits n = 1, 2, 3, … in order, sometimes several per
	// transaction, until told to stop.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var committed atomic.Int64
	writerDone := make(chan error, 1)
	go func() {
		writerDone <- func() error {
			conn, err := pgx.Connect(context.Background(), pg.DSN("postgres"))
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			n := int64(0)
			for ctx.Err() == nil {
				k := int64(1 + rand.IntN(5))
				_, err := conn.Exec(context.Background(),
					`INSERT INTO numbered SELECT g, repeat('p', 100) FROM generate_series($1::int, $2::int) g`, n+1, n+k)
				if err != nil {
					return err
				}
				n += k
				committed.Store(n)
			}
			return nil
		}()
	}()

	logs := filepath.Join(t.TempDir(), "cdcd.log")
	for i := range 6 {
		cmd := cdcdCmd(bin, cfgPath, logs)
		require.NoError(t, cmd.Start())
		// Not synchronisation: a random moment to kill at, so the kills
		// land in different phases (connecting, mid-transaction,
		// mid-sync). The assertions below hold whenever the kill lands.
		time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		t.Logf("kill %d: %d rows committed so far", i+1, committed.Load())
	}
	cancel()
	require.NoError(t, <-writerDone)
	total := committed.Load()
	require.Positive(t, total)
	m := marker(t, pg)

	// A last, clean run catches up.
	cmd := cdcdCmd(bin, cfgPath, logs)
	require.NoError(t, cmd.Start())
	if !assert.Eventually(t, func() bool { return trailPast(t, dir, m) }, 2*time.Minute, 200*time.Millisecond) {
		out, _ := os.ReadFile(logs)
		t.Fatalf("trail did not catch up; cdcd log:\n%s", out)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "clean stop exits 0")

	var got []int64
	for _, tx := range readTrail(t, dir) {
		for _, c := range tx.changes {
			if c.Op == change.OpInsert && c.Relation.Name == "numbered" {
				n, err := strconv.ParseInt(string(col(c, c.New, "n").Data), 10, 64)
				require.NoError(t, err)
				got = append(got, n)
			}
		}
	}
	for i, n := range got {
		if n != int64(i+1) {
			t.Fatalf("row %d of the trail is n=%d, want %d (duplicate, gap or reordering)", i, n, i+1)
		}
	}
	require.Equal(t, int(total), len(got), "every committed row exactly once")
	t.Logf("%d rows, %d segments, all exactly once in commit order", total, countSegments(t, dir))
}

// trailPast reports whether the trail (possibly being written) holds a
// commit ending past l.
func trailPast(t testing.TB, dir string, l change.LSN) bool {
	t.Helper()
	r, err := trail.NewReader(dir, 0, trail.ReaderOptions{})
	if err != nil {
		return false // not created yet
	}
	defer r.Close()
	for {
		rec, err := r.Next(context.Background())
		if err != nil {
			return false
		}
		if rec.Type == trail.RecordCommit && rec.Tx.EndLSN > l {
			return true
		}
	}
}

func countSegments(t testing.TB, dir string) int {
	m, err := filepath.Glob(filepath.Join(dir, "*.trail"))
	require.NoError(t, err)
	return len(m)
}

func cdcdCmd(bin, cfg, logPath string) *exec.Cmd {
	cmd := exec.Command(bin, "capture", "--config", cfg)
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err == nil {
		cmd.Stdout, cmd.Stderr = f, f
	}
	return cmd
}

// buildCdcd builds the cdcd binary once per test binary run.
func buildCdcd(t testing.TB) string { t.Helper(); return pgtest.BuildCdcdT(t) }

// TestCaptureSkipsRedelivered: when the server re-sends transactions the
// trail already holds (confirmed_flush_lsn behind the trail, e.g. after a
// source crash), capture skips them instead of storing them twice.
func TestCaptureSkipsRedelivered(t *testing.T) {
	pg := pgtest.StartT(t, pgtest.Options{})
	pg.ExecT(t, "postgres", `CREATE TABLE t (id int PRIMARY KEY)`, `CREATE PUBLICATION cdcd FOR ALL TABLES`,
		`SELECT pg_create_logical_replication_slot('old', 'pgoutput')`)
	dir := t.TempDir()
	cfg := testConfig(pg, dir)
	cfg.Source.Heartbeat = -1
	r := startCapture(t, cfg)
	waitSlot(t, pg)
	pg.ExecT(t, "postgres", `INSERT INTO t SELECT generate_series(1, 5)`, `INSERT INTO t VALUES (6)`)
	r.waitPast(t, marker(t, pg), 30*time.Second)
	r.stop(t)
	pg.ExecT(t, "postgres", `INSERT INTO t VALUES (7)`)

	// Resume from slot "old", still at the very beginning, and ask the
	// server to start there: it re-sends 1..6.
	cfg.Source.Slot = "old"
	var held, requested change.LSN
	pgOpen := postgres.NewOpener(cfg.Source, nil)
	cfg.Open = func(ctx context.Context) (source.Source, source.Identity, error) {
		src, id, err := pgOpen(ctx)
		return olderStart{src, &held, &requested}, id, err
	}
	c, err := capture.New(cfg)
	require.NoError(t, err)
	r2 := run(c)
	r2.waitPast(t, marker(t, pg), 30*time.Second)
	r2.stop(t)
	require.NotZero(t, requested)
	require.Less(t, requested, held, "the stream started below what the trail holds")

	var ids []string
	for _, tx := range readTrail(t, dir) {
		for _, ch := range tx.changes {
			if ch.Op == change.OpInsert {
				ids = append(ids, string(ch.New[0].Data))
			}
		}
	}
	require.Equal(t, []string{"1", "2", "3", "4", "5", "6", "7"}, ids)
}

// olderStart asks the server to start at the slot's own position (as for a
// new trail) whatever the trail holds, as after confirmed_flush_lsn went
// backwards on a source crash.
type olderStart struct {
	source.Source
	held, requested *change.LSN
}

func (o olderStart) Start(ctx context.Context, held change.LSN) (change.LSN, error) {
	start, err := o.Source.Start(ctx, 0)
	*o.held, *o.requested = held, start
	return start, err
}

// TestCaptureReconnects: the walsender is terminated several times while a
// writer commits; capture reconnects with backoff and the trail still holds
// every row exactly once, in order.
func TestCaptureReconnects(t *testing.T) {
	pg := pgtest.StartT(t, pgtest.Options{})
	pg.ExecT(t, "postgres", `CREATE TABLE numbered (n int PRIMARY KEY)`)
	dir := t.TempDir()
	r := startCapture(t, testConfig(pg, dir))
	waitSlot(t, pg)
	for round := range 4 {
		pg.ExecT(t, "postgres", fmt.Sprintf(`INSERT INTO numbered SELECT generate_series(%d, %d)`, round*1000+1, round*1000+1000))
		var pid int
		require.NoError(t, pg.QueryRow(`SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'cdcd'`, &pid))
		pg.ExecT(t, "postgres", fmt.Sprintf(`SELECT pg_terminate_backend(%d)`, pid))
		// pg_terminate_backend returns before the walsender exits, so the
		// slot may still show the old session: wait for capture to see the
		// loss and for a new walsender to hold the slot.
		require.Eventually(t, func() bool {
			var active *int
			err := pg.QueryRow(`SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'cdcd'`, &active)
			return err == nil && active != nil && *active != pid && r.c.Stats().Reconnects >= uint64(round+1)
		}, time.Minute, 10*time.Millisecond)
	}
	r.waitPast(t, marker(t, pg), time.Minute)
	require.GreaterOrEqual(t, r.c.Stats().Reconnects, uint64(4))
	r.stop(t)
	var got []int
	for _, tx := range readTrail(t, dir) {
		for _, c := range tx.changes {
			if c.Op == change.OpInsert {
				n, err := strconv.Atoi(string(c.New[0].Data))
				require.NoError(t, err)
				got = append(got, n)
			}
		}
	}
	require.Len(t, got, 4000)
	for i, n := range got {
		require.Equal(t, i+1, n)
	}
}

// TestCaptureRefusesDamagedTrail: bytes flipped in the middle of the active
// segment, with acknowledged transactions after them, are not a torn tail.
// Capture stops with the corruption (file and offset) instead of cutting
// those transactions off, and leaves the trail as it was.
func TestCaptureRefusesDamagedTrail(t *testing.T) {
	pg := pgtest.StartT(t, pgtest.Options{})
	pg.ExecT(t, "postgres", `CREATE TABLE t (id int PRIMARY KEY, pad text)`)
	dir := t.TempDir()
	cfg := testConfig(pg, dir)
	r := startCapture(t, cfg)
	waitSlot(t, pg)
	for i := range 40 {
		pg.ExecT(t, "postgres", fmt.Sprintf(`INSERT INTO t VALUES (%d, repeat('x', 200))`, i))
	}
	r.waitPast(t, marker(t, pg), time.Minute)
	r.stop(t)

	segs, err := trail.Segments(dir)
	require.NoError(t, err)
	path := segs[len(segs)-1].Path
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	mid := (len(b) / 2) &^ 7
	for i := range 4 {
		b[mid+i] ^= 0xa5
	}
	require.NoError(t, os.WriteFile(path, b, 0o600))
	before := snapshotDir(t, dir)

	c, err := capture.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = c.Run(ctx)
	require.ErrorIs(t, err, trail.ErrCorrupt)
	var ce *trail.CorruptError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, path, ce.File)
	require.LessOrEqual(t, ce.Offset, int64(mid))
	require.Contains(t, err.Error(), path)
	require.Equal(t, before, snapshotDir(t, dir), "nothing cut, nothing written")
}

// snapshotDir returns every file of dir by name.
func snapshotDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	m := make(map[string][]byte)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		m[e.Name()] = b
	}
	return m
}
