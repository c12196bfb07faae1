package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// lines collects a process's output as it comes.
type lines struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lines) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func startBin(t *testing.T, bin string, args ...string) (*exec.Cmd, *lines) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out := &lines{}
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = pw, pw
	require.NoError(t, cmd.Start())
	pw.Close()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			out.mu.Lock()
			out.b.WriteString(sc.Text() + "\n")
			out.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, out
}

func stopBin(t *testing.T, cmd *exec.Cmd, out *lines) {
	t.Helper()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), out.String())
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func countOf(t *testing.T, c *pgtest.Cluster, sql string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, c.QueryRow(sql, &n))
	return n
}

// TestCutoverAndBackThroughTheBinary is the whole procedure as a user runs
// it: `cdcd run` keeps PG17 green in sync with PG15 blue while pgbench
// writes to blue through a proxy; `cdcd cutover --dry-run` passes under
// load; `cdcd cutover` flips the proxy to green and then replicates green
// → blue once the forward cdcd is stopped; `cdcd cutover --back` flips the
// proxy back to blue, which is writable again and current.
func TestCutoverAndBackThroughTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the cdcd binary and starts servers")
	}
	blue := pgtest.StartT(t, pgtest.Options{Name: "blue"})
	green := pgtest.StartT(t, pgtest.Options{Name: "green", Version: pgtest.V17})
	pgbin, err := pgtest.BinDir(pgtest.V15)
	require.NoError(t, err)
	out, err := exec.Command(filepath.Join(pgbin, "pgbench"), "-i", "-s", "1", "-q", blue.DSN("postgres")).CombinedOutput()
	require.NoError(t, err, string(out))
	for _, c := range []*pgtest.Cluster{blue, green} {
		c.ExecT(t, "postgres", `CREATE TABLE orders (id bigserial PRIMARY KEY, note text)`)
	}
	proxy := pgtest.StartProxyT(t, fmt.Sprintf("127.0.0.1:%d", blue.Port))
	bin := pgtest.BuildCdcdT(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cdcd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
source: { dsn: %q, create: true, heartbeat: 1s, status_interval: 200ms }
trail: { dir: %q }
snapshot: { mode: initial }
schema: { create: true }
sinks:
  - { name: green, kind: postgres, dsn: %q, batch: { max_delay: 5ms } }
http: { listen: "127.0.0.1:%d" }
log: { format: text }
cutover:
  hook: "echo 127.0.0.1:%d > %s"
  back_hook: "echo 127.0.0.1:%d > %s"
  verify: counts
  rollback: true
`, blue.DSN("postgres"), filepath.Join(dir, "trail"), green.DSN("postgres"), freePort(t),
		green.Port, proxy.BackendFile, blue.Port, proxy.BackendFile)), 0o600))

	fwd, fwdOut := startBin(t, bin, "run", "--config", cfg)
	m := blue.MarkerT(t)
	require.Eventually(t, func() bool {
		var end string
		err := green.QueryRow("SELECT end_lsn::text FROM cdcd.checkpoint WHERE name = 'green'", &end)
		return err == nil && end > "" && parse(end) > uint64(m)
	}, 2*time.Minute, 20*time.Millisecond, "green in sync: %s", fwdOut)

	load := pgtest.StartLoadT(t, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", proxy.Port), 2)
	require.Eventually(t, func() bool { return countOf(t, blue, "SELECT count(*) FROM pgbench_history") > 100 },
		time.Minute, 10*time.Millisecond)

	dry, err := exec.Command(bin, "cutover", "--config", cfg, "--dry-run", "--verify", "full").CombinedOutput()
	require.NoError(t, err, "a dry run under load passes (verify held at an exact position): %s", dry)
	require.Contains(t, string(dry), "verify (dry run, full)")
	require.NotContains(t, string(dry), "fence")

	co, coOut := startBin(t, bin, "cutover", "--config", cfg)
	require.Eventually(t, func() bool { return strings.Contains(coOut.String(), "switched: ") || co.ProcessState != nil },
		2*time.Minute, 10*time.Millisecond)
	t.Log("\n" + coOut.String())
	require.Contains(t, coOut.String(), "switched: writes were unavailable for")
	require.Equal(t, fmt.Sprintf("127.0.0.1:%d", green.Port), proxy.Backend())
	blueHistory := countOf(t, blue, "SELECT count(*) FROM pgbench_history")

	// The forward cdcd has nothing left to do; the cutover process then
	// replicates green → blue.
	stopBin(t, fwd, fwdOut)
	require.Eventually(t, func() bool { return countOf(t, green, "SELECT count(*) FROM pgbench_history") > blueHistory+100 },
		2*time.Minute, 10*time.Millisecond, "pgbench goes on against green")
	require.Eventually(t, func() bool { return countOf(t, blue, "SELECT count(*) FROM pgbench_history") > blueHistory+50 },
		2*time.Minute, 10*time.Millisecond, "green's writes reach blue: %s", coOut)

	back, err := exec.Command(bin, "cutover", "--config", cfg, "--back").CombinedOutput()
	t.Log("\n" + string(back))
	require.NoError(t, err, string(back))
	require.Contains(t, string(back), "unfence targets")
	require.Equal(t, fmt.Sprintf("127.0.0.1:%d", blue.Port), proxy.Backend())
	h := countOf(t, blue, "SELECT count(*) FROM pgbench_history")
	require.Eventually(t, func() bool { return countOf(t, blue, "SELECT count(*) FROM pgbench_history") > h+50 },
		2*time.Minute, 10*time.Millisecond, "pgbench goes on against blue, writable again")
	load.Stop()
	stopBin(t, co, coOut)
}

func parse(lsn string) uint64 {
	var hi, lo uint64
	fmt.Sscanf(lsn, "%X/%X", &hi, &lo)
	return hi<<32 | lo
}
