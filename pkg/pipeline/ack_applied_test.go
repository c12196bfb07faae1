package pipeline_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// TestAckAppliedLostTrail: under capture.ack: applied, cdcd is killed
// while pgbench runs and its trail directory is deleted (a lost host); a
// fresh cdcd with an empty trail resumes from the slot, the sink skips what
// it applied, and the target ends identical — pgbench_history, which has no
// key, with exactly the source's row count.
func TestAckAppliedLostTrail(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the cdcd binary")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	pgbench(t, src, "-i", "-s", "1", "-q")
	pgbench(t, dst, "-i", "-s", "1", "-q")
	bin := buildCdcd(t)
	trailDir := filepath.Join(t.TempDir(), "trail")
	cfg := filepath.Join(t.TempDir(), "cdcd.yaml")
	yaml := yamlConfig(src, nil, dst, trailDir) + "capture: { ack: applied }\n"
	// A slow sink keeps a backlog in the trail when the host is lost.
	yaml = strings.Replace(yaml, "batch: { max_rows: 5000, max_delay: 50ms }", "batch: { max_rows: 50, max_delay: 50ms }", 1)
	require.NoError(t, os.WriteFile(cfg, []byte(yaml), 0o600))
	logPath := filepath.Join(t.TempDir(), "cdcd.log")

	first := startCdcd(t, bin, cfg, logPath)
	waitSlot(t, src)
	pgbin, err := pgtest.BinDir(pgtest.V15)
	require.NoError(t, err)
	bench := exec.Command(filepath.Join(pgbin, "pgbench"), "-c", "4", "-j", "2", "-T", "12", "-n", src.DSN("postgres"))
	out := &strings.Builder{}
	bench.Stdout, bench.Stderr = out, out
	require.NoError(t, bench.Start())

	// Kill once the target has applied some of the workload.
	require.Eventually(t, func() bool {
		var n int64
		return queryRow(dst, `SELECT count(*) FROM pgbench_history`, &n) == nil && n > 2000
	}, time.Minute, 50*time.Millisecond)
	first.kill(t)
	require.NoError(t, os.RemoveAll(trailDir))
	second := startCdcd(t, bin, cfg, logPath)

	require.NoError(t, bench.Wait(), "pgbench: %s", out)
	waitCheckpoint(t, dst, marker(t, src), logPath, 3*time.Minute)
	require.NoError(t, second.cmd.Process.Signal(syscall.SIGTERM))
	err = <-second.done
	second.done <- err
	require.NoError(t, err, "a clean stop exits 0")
	requireSameTables(t, src, dst, pgbenchTables)
	var n1, n2 int64
	require.NoError(t, queryRow(src, `SELECT count(*) FROM pgbench_history`, &n1))
	require.NoError(t, queryRow(dst, `SELECT count(*) FROM pgbench_history`, &n2))
	require.Equal(t, n1, n2, "pgbench_history has no key: duplicates or losses would show here")
	log, _ := os.ReadFile(logPath)
	require.Contains(t, string(log), "sink position is from an earlier trail", "the second cdcd resumed the sink by end LSN")
	t.Logf("%d history rows, identical", n1)
}
