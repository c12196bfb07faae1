package pipeline_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
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
	psql := func(dsn string, sql string) *exec.Cmd {
		bin, err := pgtest.BinDir(pgtest.V15)
		require.NoError(t, err)
		return exec.Command(filepath.Join(bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql)
	}
	long := psql(src.DSN("postgres"), `BEGIN; INSERT INTO small SELECT g, 'long' FROM generate_series(100, 5100) g; SELECT pg_sleep(0.5); INSERT INTO small SELECT g, 'long2' FROM generate_series(6000, 9000) g; COMMIT;`)
	require.NoError(t, long.Start())
	src.ExecT(t, "postgres", `INSERT INTO small VALUES (2, 'between')`)
	require.NoError(t, long.Wait())

	r.WaitApplied(t, marker(t, src), 2*time.Minute)
	r.Stop(t)
	requireSameTables(t, src, dst, map[string]string{"big": "id", "small": "id", "fresh": "id"})
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
	src := pgtest.StartT(t, pgtest.Options{Name: "source", Conf: map[string]string{"logical_decoding_work_mem": "64kB"}})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	src.ExecT(t, "postgres", streamedTables...)
	dst.ExecT(t, "postgres", streamedTables...)
	cfg := filepath.Join(t.TempDir(), "cdcd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(yamlConfig(src, nil, dst, t.TempDir())), 0o600))
	logPath := filepath.Join(t.TempDir(), "cdcd.log")
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
