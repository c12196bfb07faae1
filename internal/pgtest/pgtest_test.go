package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func requireBinaries(t *testing.T, v Version) {
	t.Helper()
	if _, err := BinDir(v); err != nil {
		t.Fatalf("%v (run `make deps`)", err)
	}
}

func queryInt(t *testing.T, ctx context.Context, dsn, sql string) int {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var n int
	require.NoError(t, conn.QueryRow(ctx, sql).Scan(&n))
	return n
}

func TestStartExecStop(t *testing.T) {
	t.Parallel()
	for _, v := range []Version{V15, V17} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			t.Parallel()
			requireBinaries(t, v)
			ctx := testCtx(t)
			start := time.Now()
			c, err := Start(ctx, Options{Version: v, Name: t.Name(), Conf: map[string]string{"work_mem": "8MB"}})
			require.NoError(t, err)
			t.Logf("PostgreSQL %d started in %v on port %d", v, time.Since(start).Round(time.Millisecond), c.Port)

			require.NoError(t, c.CreateDatabase(ctx, "app-db"))
			require.NoError(t, c.Exec(ctx, "app-db",
				"CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)",
				"INSERT INTO t VALUES (3)"))
			assert.Equal(t, 3, queryInt(t, ctx, c.DSN("app-db"), "SELECT count(*) FROM t"))
			assert.Equal(t, int(v), queryInt(t, ctx, c.DSN("postgres"), "SELECT current_setting('server_version_num')::int / 10000"))

			conn, err := pgx.Connect(ctx, c.DSN("postgres"))
			require.NoError(t, err)
			var walLevel, workMem, fsync string
			require.NoError(t, conn.QueryRow(ctx, "SELECT current_setting('wal_level'), current_setting('work_mem'), current_setting('fsync')").
				Scan(&walLevel, &workMem, &fsync))
			conn.Close(ctx)
			assert.Equal(t, "logical", walLevel)
			assert.Equal(t, "8MB", workMem)
			assert.Equal(t, "off", fsync)

			// A replication connection is accepted.
			rconn, err := pgx.Connect(ctx, c.ReplicationDSN("app-db"))
			require.NoError(t, err)
			rconn.Close(ctx)

			require.Error(t, c.Exec(ctx, "app-db", "SELECT * FROM missing"))

			require.NoError(t, c.Stop())
			require.NoError(t, c.Stop(), "Stop is idempotent")
			_, err = os.Stat(c.Dir)
			assert.ErrorIs(t, err, os.ErrNotExist)
			_, err = pgx.Connect(ctx, c.DSN("postgres"))
			assert.Error(t, err, "server still accepts connections after Stop")
		})
	}
}

func TestKillRestart(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	c := StartT(t, Options{Name: "crash"})
	c.ExecT(t, "postgres", "CREATE TABLE t (id int)", "INSERT INTO t VALUES (1)")
	require.NoError(t, c.Kill())
	_, err := pgx.Connect(ctx, c.DSN("postgres"))
	require.Error(t, err)
	require.NoError(t, c.Restart(ctx))
	assert.Equal(t, 1, queryInt(t, ctx, c.DSN("postgres"), "SELECT count(*) FROM t"))
	assert.Contains(t, c.LogTail(50), "database system was interrupted")
	require.NoError(t, c.Restart(ctx), "restart of a running server")
}

func TestStartFailureReportsLog(t *testing.T) {
	t.Parallel()
	// A name of this process's own: another test run on the machine (a
	// second checkout) fails the same start at the same time.
	name := fmt.Sprintf("bad%d", os.Getpid())
	_, err := Start(testCtx(t), Options{Name: name, Conf: map[string]string{"shared_buffers": "nonsense"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "shared_buffers")
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), "cdcd-pg15-"+name+"-*"))
	assert.Empty(t, matches, "temporary directory left behind")
}

func TestStandby15(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	p := StartT(t, Options{Name: "p15"})
	p.ExecT(t, "postgres", "CREATE TABLE before (id int)", "INSERT INTO before VALUES (1)")
	start := time.Now()
	s := p.StartStandbyT(t, Options{})
	t.Logf("PostgreSQL 15 standby ready in %v", time.Since(start).Round(time.Millisecond))
	assert.Equal(t, 1, queryInt(t, ctx, s.DSN("postgres"), "SELECT count(*) FROM before"))
	assert.Equal(t, 1, queryInt(t, ctx, s.DSN("postgres"), "SELECT pg_is_in_recovery()::int"))

	p.ExecT(t, "postgres", "CREATE TABLE after (id int)", "INSERT INTO after SELECT generate_series(1, 100)")
	require.NoError(t, p.WaitReplay(ctx, s))
	assert.Equal(t, 100, queryInt(t, ctx, s.DSN("postgres"), "SELECT count(*) FROM after"))
	require.Error(t, s.Exec(ctx, "postgres", "CREATE TABLE nope (id int)"), "standby accepted a write")
}

func TestStandby17LogicalDecoding(t *testing.T) {
	t.Parallel()
	requireBinaries(t, V17)
	ctx := testCtx(t)
	p := StartT(t, Options{Version: V17, Name: "p17"})
	p.ExecT(t, "postgres",
		"CREATE TABLE items (id int PRIMARY KEY, name text)",
		"CREATE PUBLICATION pub FOR TABLE items")
	start := time.Now()
	s := p.StartStandbyT(t, Options{Name: "s17"})
	t.Logf("PostgreSQL 17 standby ready in %v", time.Since(start).Round(time.Millisecond))

	stop := p.LogStandbySnapshots(ctx, 100*time.Millisecond)
	err := s.Exec(ctx, "postgres", "SELECT pg_create_logical_replication_slot('slot', 'pgoutput')")
	require.NoError(t, stop())
	require.NoError(t, err)

	p.ExecT(t, "postgres", "INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 10) g")
	require.NoError(t, p.WaitReplay(ctx, s))

	n := queryInt(t, ctx, s.DSN("postgres"), `SELECT count(*) FROM pg_logical_slot_peek_binary_changes('slot', NULL, NULL,
		'proto_version', '1', 'publication_names', 'pub') WHERE substr(data, 1, 1) = 'I'`)
	assert.Equal(t, 10, n, "insert messages decoded on the standby")
}

func TestConcurrentStarts(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	ports := make([]int, 3)
	for i := range ports {
		wg.Go(func() {
			c, err := Start(t.Context(), Options{Name: "many"})
			if !assert.NoError(t, err) {
				return
			}
			ports[i] = c.Port
			assert.NoError(t, c.Exec(t.Context(), "postgres", "SELECT 1"))
			assert.NoError(t, c.Stop())
		})
	}
	wg.Wait()
	assert.NotEqual(t, ports[0], ports[1])
	assert.NotEqual(t, ports[1], ports[2])
}

func TestBinDir(t *testing.T) {
	dir, err := BinDir(V15)
	require.NoError(t, err, "run `make deps`")
	assert.FileExists(t, filepath.Join(dir, "postgres"))

	t.Setenv("CDCD_PG17_BIN", "/nonexistent")
	_, err = BinDir(V17)
	require.ErrorContains(t, err, "PostgreSQL 17 binaries not found at /nonexistent: run `make deps`")

	_, err = BinDir(16)
	require.Error(t, err)
}

func TestQuoteConf(t *testing.T) {
	assert.Equal(t, "'on'", quoteConf("on"))
	assert.Equal(t, "'it''s'", quoteConf("it's"))
	assert.Equal(t, "'already'", quoteConf("'already'"))
}

// BenchmarkStart measures initdb plus startup plus shutdown of one cluster.
func BenchmarkStart(b *testing.B) {
	for _, v := range []Version{V15, V17} {
		b.Run(fmt.Sprint(v), func(b *testing.B) {
			for b.Loop() {
				c, err := Start(b.Context(), Options{Version: v, Name: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Stop(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStartStandby measures making and stopping a standby of a running primary.
func BenchmarkStartStandby(b *testing.B) {
	for _, v := range []Version{V15, V17} {
		b.Run(fmt.Sprint(v), func(b *testing.B) {
			p := StartT(b, Options{Version: v, Name: "bench"})
			for b.Loop() {
				s, err := p.StartStandby(b.Context(), Options{})
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Stop(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The binary directories of test processes that ended are removed; those
// of running ones, and names without a pid, are left.
func TestSweepBins(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	mk := func(name string) string {
		d := filepath.Join(tmp, name)
		require.NoError(t, os.MkdirAll(filepath.Join(d, "sub"), 0o755))
		return d
	}
	gone := mk(fmt.Sprintf("%s%d-123", binPrefix, dead.Process.Pid))
	alive := mk(fmt.Sprintf("%s%d-456", binPrefix, os.Getpid()))
	old := mk(binPrefix + "789")
	other := mk("something-else")
	sweepBins()
	require.NoDirExists(t, gone, "the directory of an ended process")
	for _, d := range []string{alive, old, other} {
		require.DirExists(t, d)
	}
}
