package pipeline_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// streamedTables are the tables of the streaming tests.
var streamedTables = []string{
	`CREATE TABLE big (id int PRIMARY KEY, n int NOT NULL, pad text)`,
	`CREATE TABLE small (id int PRIMARY KEY, note text)`,
}

// streamingPair starts a source that streams every transaction past 64kB
// and a target, both with streamedTables, and writes a `cdcd run` config
// for them; it returns the config's and the log's paths.
func streamingPair(t testing.TB) (src, dst *pgtest.Cluster, cfg, logPath string) {
	t.Helper()
	src = pgtest.StartT(t, pgtest.Options{Name: "source", Conf: map[string]string{"logical_decoding_work_mem": "64kB"}})
	dst = pgtest.StartT(t, pgtest.Options{Name: "target"})
	src.ExecT(t, "postgres", streamedTables...)
	dst.ExecT(t, "postgres", streamedTables...)
	cfg = filepath.Join(t.TempDir(), "cdcd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(yamlConfig(src, nil, dst, t.TempDir())), 0o600))
	return src, dst, cfg, filepath.Join(t.TempDir(), "cdcd.log")
}

// streamStats reads how much the source streamed and spilled for the slot.
func streamStats(t testing.TB, c *pgtest.Cluster) (streamTxns, streamBytes, spillBytes int64) {
	t.Helper()
	require.NoError(t, queryRow(c, `SELECT stream_txns, stream_bytes, spill_bytes FROM pg_stat_replication_slots WHERE slot_name = 'cdcd'`,
		&streamTxns, &streamBytes, &spillBytes))
	return
}

// TestStreamedAbortsPG17: with debug_logical_replication_streaming =
// immediate every transaction is streamed while it runs. A committed one
// arrives whole, an aborted one and an aborted subtransaction leave no
// trace, and an ordinary transaction between a streamed one's segments
// keeps its commit order.
func TestStreamedAbortsPG17(t *testing.T) {
	src := pgtest.StartT(t, pgtest.Options{Version: pgtest.V17, Name: "source", Conf: map[string]string{
		"logical_decoding_work_mem":           "64kB",
		"debug_logical_replication_streaming": "immediate",
	}})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	src.ExecT(t, "postgres", streamedTables...)
	dst.ExecT(t, "postgres", append(streamedTables, `CREATE TABLE fresh (id int PRIMARY KEY, note text)`)...)
	r := startPipeline(t, yamlConfig(src, nil, dst, t.TempDir()))
	waitSlot(t, src)

	src.ExecT(t, "postgres",
		// Committed, with a savepoint released and one rolled back.
		`BEGIN`,
		`INSERT INTO big SELECT g, g, repeat('x', 100) FROM generate_series(1, 20000) g`,
		`SAVEPOINT a`,
		`INSERT INTO big SELECT g, g, 'kept subtransaction' FROM generate_series(20001, 25000) g`,
		`RELEASE SAVEPOINT a`,
		`SAVEPOINT b`,
		`INSERT INTO big SELECT g, g, 'aborted subtransaction' FROM generate_series(25001, 40000) g`,
		`SAVEPOINT c`,
		`UPDATE big SET n = -1 WHERE id <= 1000`,
		`RELEASE SAVEPOINT c`,
		`ROLLBACK TO SAVEPOINT b`,
		`UPDATE big SET n = n + 1 WHERE id % 7 = 0`,
		`DELETE FROM big WHERE id % 11 = 0`,
		`COMMIT`,
		// Aborted whole.
		`BEGIN`,
		`INSERT INTO big SELECT g, g, 'aborted' FROM generate_series(50001, 80000) g`,
		`DELETE FROM big WHERE id < 5000`,
		`ROLLBACK`,
		`INSERT INTO small VALUES (1, 'after the abort')`,
		// A new table's schema is first sent inside a subtransaction that
		// aborts; the transaction's later changes rely on it.
		`BEGIN`,
		`CREATE TABLE fresh (id int PRIMARY KEY, note text)`,
		`SAVEPOINT s`,
		`INSERT INTO fresh VALUES (1, 'aborted in a savepoint')`,
		`ROLLBACK TO SAVEPOINT s`,
		`INSERT INTO fresh VALUES (2, 'kept after the savepoint')`,
		`COMMIT`,
	)
	// Two interleaved transactions on two connections: one streamed in
	// segments, one committed in between.
	long := src.StartPsqlT(t, "postgres", `BEGIN; INSERT INTO small SELECT g, 'long' FROM generate_series(100, 5100) g; SELECT pg_sleep(3); INSERT INTO small SELECT g, 'long2' FROM generate_series(6000, 9000) g; COMMIT;`)
	// Its first segments are out (it sleeps) before the other commits.
	require.Eventually(t, func() bool {
		var n int
		return queryRow(src, `SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'`, &n) == nil && n == 1
	}, 30*time.Second, 5*time.Millisecond)
	src.ExecT(t, "postgres", `INSERT INTO small VALUES (2, 'between')`)
	require.NoError(t, long.Wait())

	r.WaitApplied(t, marker(t, src), 2*time.Minute)
	st := r.P.Capture().Stats()
	r.Stop(t)
	requireSameTables(t, src, dst, map[string]string{"big": "id", "small": "id", "fresh": "id"})
	// Forwarded before their commits (source.forward_streamed: auto):
	// withdrawn at the aborted subtransactions, the abort and the commit
	// in between (the rest, heartbeats and markers too under immediate
	// streaming, committed as they were forwarded).
	t.Logf("capture: %d transactions forwarded, %d withdrawn", st.Forwarded, st.Withdrawn)
	require.GreaterOrEqual(t, st.Withdrawn, uint64(4), "withdrawn: two savepoint rollbacks, one abort, one commit in between")
	var aborted int64
	require.NoError(t, queryRow(dst, `SELECT (SELECT count(*) FROM big WHERE pad LIKE 'aborted%' OR n = -1) + (SELECT count(*) FROM fresh WHERE note LIKE 'aborted%')`, &aborted))
	require.Zero(t, aborted, "rows of aborted (sub)transactions on the target")
	txns, bytes, _ := streamStats(t, src)
	require.Positive(t, txns, "the source streamed transactions")
	t.Logf("source streamed %d transactions, %d bytes", txns, bytes)
}

// TestStreamedTwoMillionRows: one 2M-row transaction on a source with
// logical_decoding_work_mem = 64kB arrives through streaming (the source
// spills nothing) and is equal on the target; the cdcd process's peak RSS
// stays bounded.
func TestStreamedTwoMillionRows(t *testing.T) {
	if testing.Short() {
		t.Skip("2M rows through the cdcd binary")
	}
	src, dst, cfg, logPath := streamingPair(t)
	p := startCdcd(t, buildCdcd(t), cfg, logPath)
	waitSlot(t, src)

	began := time.Now()
	src.ExecT(t, "postgres", `INSERT INTO big SELECT g, g, md5(g::text) FROM generate_series(1, 2000000) g`)
	committed := time.Since(began)
	m := marker(t, src)
	waitCheckpoint(t, dst, m, logPath, 5*time.Minute)
	t.Logf("committed on the source after %s, applied on the target after %s", committed, time.Since(began))
	peak := peakRSS(t, p.cmd.Process.Pid)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	err := <-p.done
	p.done <- err
	require.NoError(t, err, "a clean stop exits 0")
	requireSameTables(t, src, dst, map[string]string{"big": "id"})
	txns, bytes, spilled := streamStats(t, src)
	require.Positive(t, txns, "the transaction was streamed")
	require.Less(t, spilled, bytes/10, "the source streamed the transaction rather than spilling it to its disk")
	t.Logf("source streamed %d bytes, spilled %d; cdcd peak RSS %d MiB", bytes, spilled, peak>>20)
	require.Less(t, peak, int64(150<<20), "cdcd peak RSS (goal ≤ 150 MiB)")
}

// waitCheckpoint waits until the target's checkpoint of sink "target" is
// past lsn.
func waitCheckpoint(t testing.TB, dst *pgtest.Cluster, lsn fmt.Stringer, logPath string, timeout time.Duration) {
	t.Helper()
	var lastErr error
	if !assert.Eventually(t, func() bool {
		var done bool
		lastErr = queryRow(dst, fmt.Sprintf(`SELECT end_lsn > '%s'::pg_lsn FROM cdcd.checkpoint WHERE name = 'target'`, lsn), &done)
		return lastErr == nil && done
	}, timeout, 100*time.Millisecond) {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("target did not catch up (%v); log tail:\n%s", lastErr, tail(log, 3000))
	}
}

// peakRSS is a process's peak resident set size (VmHWM) in bytes.
func peakRSS(t testing.TB, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// TestForwardedKill9: a streamed transaction is applied on the target while
// it still runs on the source (source.forward_streamed: auto) — the sink's
// session holds its rows in an open transaction, invisible — and a SIGKILL
// of `cdcd run` at that moment loses and duplicates nothing: the trail
// drops the uncommitted tail, the target rolls back, the source streams
// the transaction again, and after its commit both sides are equal.
func TestForwardedKill9(t *testing.T) {
	src, dst, cfg, logPath := streamingPair(t)
	bin := buildCdcd(t)
	p := startCdcd(t, bin, cfg, logPath)
	waitSlot(t, src)

	// holder keeps an advisory lock that the big transaction waits for
	// halfway, until the test ends holder's sleep.
	holder := src.StartPsqlT(t, "postgres", `SELECT pg_advisory_lock(1), pg_sleep(600)`)
	require.Eventually(t, func() bool {
		var n int
		return queryRow(src, `SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'`, &n) == nil && n == 1
	}, 30*time.Second, 5*time.Millisecond)
	long := src.StartPsqlT(t, "postgres", `BEGIN; INSERT INTO big SELECT g, g, md5(g::text) FROM generate_series(1, 100000) g;
		SELECT pg_advisory_xact_lock(1); UPDATE big SET n = -n WHERE id % 3 = 0; COMMIT;`)

	// The target's sink session has inserted into big in a transaction it
	// has not committed: the source's transaction is being applied early.
	applying := func() bool {
		var n int
		err := queryRow(dst, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE l.relation = 'big'::regclass AND l.mode = 'RowExclusiveLock' AND a.state = 'idle in transaction'`, &n)
		return err == nil && n == 1
	}
	// holding: some session holds big's lock (active or idle in transaction).
	holding := func() bool {
		var n int
		err := queryRow(dst, `SELECT count(*) FROM pg_locks WHERE relation = 'big'::regclass AND mode = 'RowExclusiveLock' AND granted`, &n)
		return err == nil && n > 0
	}
	require.Eventually(t, applying, time.Minute, 10*time.Millisecond, "the sink applies the transaction before its commit")
	var visible int
	require.NoError(t, queryRow(dst, `SELECT count(*) FROM big`, &visible))
	require.Zero(t, visible, "nothing of an uncommitted source transaction is visible on the target")

	p.kill(t)
	require.Eventually(t, func() bool { return !holding() }, time.Minute, 10*time.Millisecond, "the target rolled back")
	p = startCdcd(t, bin, cfg, logPath)
	waitSlot(t, src)
	require.Eventually(t, applying, time.Minute, 10*time.Millisecond, "applied early again after the restart")
	// The source transaction waits; cdcd's heartbeats (every second here)
	// must not take it back meanwhile: the sink's transaction keeps its
	// lock (between chunks it may be active or idle, never gone).
	require.Never(t, func() bool { return !holding() }, 2500*time.Millisecond, 20*time.Millisecond,
		"the target transaction stays open through heartbeat intervals with no data")

	// Release the lock: the big transaction updates a third of its rows
	// and commits.
	src.ExecT(t, "postgres", `SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'PgSleep'`)
	require.Error(t, holder.Wait(), "the holder's sleep was cancelled")
	require.NoError(t, long.Wait())
	m := marker(t, src)
	waitCheckpoint(t, dst, m, logPath, 2*time.Minute)
	requireSameTables(t, src, dst, map[string]string{"big": "id"})
	var n, negated int
	require.NoError(t, queryRow(dst, `SELECT count(*), count(*) FILTER (WHERE n < 0) FROM big`, &n, &negated))
	require.Equal(t, 100000, n)
	require.Equal(t, 33333, negated)
	p.kill(t)
}
