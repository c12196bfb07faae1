package pipeline_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

// triggerBase reads "base" from the trigger source's state file (format in
// pkg/source/trigger/doc.go): once the change log is empty, the end of the
// last transaction capture made durable.
func triggerBase(trailDir string) (change.LSN, error) {
	f, err := os.Open(filepath.Join(trailDir, trigger.StateFile))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "base "); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			return change.LSN(n), err
		}
	}
	return 0, fmt.Errorf("no base line in %s (%v)", trigger.StateFile, s.Err())
}

// drainedOnDisk reports whether a cdcd process with a trigger source and a
// postgres sink named "target" has drained: the source's change log holds
// no committed row (rows are deleted only after the state file records
// their batch durable), and the sink's checkpoint on the target equals the
// state file's base.
func drainedOnDisk(src, dst *pgtest.Cluster, trailDir string) (bool, string) {
	left, err := changeLogRows(src)
	if err != nil || left > 0 {
		return false, fmt.Sprintf("change log: %d rows (%v)", left, err)
	}
	base, err := triggerBase(trailDir)
	if err != nil {
		return false, err.Error()
	}
	var end string
	if err := dst.QueryRow(`SELECT end_lsn::text FROM cdcd.checkpoint WHERE name = 'target'`, &end); err != nil {
		return false, fmt.Sprintf("sink checkpoint: %v", err)
	}
	l, err := change.ParseLSN(end)
	if err != nil {
		return false, err.Error()
	}
	return l == base, fmt.Sprintf("sink at %s, capture durable at %s", l, base)
}

// cdcdProc is one `cdcd run` process whose output is appended to a log.
type cdcdProc struct {
	cmd  *exec.Cmd
	done chan error
}

func startCdcd(t testing.TB, bin, cfg, logPath string) *cdcdProc {
	t.Helper()
	cmd := exec.Command(bin, "run", "--config", cfg)
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(t, cmd.Start())
	p := &cdcdProc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	t.Cleanup(func() {
		select {
		case err := <-p.done:
			p.done <- err
		default:
			_ = cmd.Process.Kill()
			p.done <- <-p.done
		}
	})
	return p
}

// streamingLines counts the "capture streaming" lines in a cdcd log: one
// per source session started.
func streamingLines(logPath string) int {
	log, _ := os.ReadFile(logPath)
	return strings.Count(string(log), "capture streaming")
}

// kill SIGKILLs the process and waits for it.
func (p *cdcdProc) kill(t testing.TB) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	err := <-p.done
	p.done <- err
}

// TestTriggerPgbenchKill9 SIGKILLs `cdcd run` (source.kind: trigger) at
// random moments while pgbench -c 2 runs, and restarts it each time;
// afterwards every pgbench table is identical on the target, and
// pgbench_history — no key, captured with allow_keyless, so a duplicate or
// a loss would show — has exactly the source's row count.
func TestTriggerPgbenchKill9(t *testing.T) {
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	pgbench(t, src, "-i", "-s", "1", "-q")
	pgbench(t, dst, "-i", "-s", "1", "-q")
	bin := buildCdcd(t)
	trailDir := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "cdcd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(triggerYAML(src, dst, trailDir, "allow_keyless: true")), 0o600))
	logPath := filepath.Join(t.TempDir(), "cdcd.log")
	out, err := exec.Command(bin, "trigger", "install", "--config", cfg).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "captured public.pgbench_history")

	start := time.Now()
	p := startCdcd(t, bin, cfg, logPath)
	bench := make(chan string, 1)
	go func() {
		bin, _ := pgtest.BinDir(pgtest.V15)
		out, err := exec.Command(filepath.Join(bin, "pgbench"), "-c", "2", "-j", "2", "-T", "20", "-n", src.DSN("postgres")).CombinedOutput()
		if err != nil {
			out = append(out, []byte(err.Error())...)
		}
		bench <- string(out)
	}()
	kills, lastBefore := 0, 0
	var benchOut string
	for benchOut == "" || kills < 6 {
		// Not a wait for anything: the kill lands at a random moment of
		// start-up, install check, poll, trail write or acknowledgement.
		time.Sleep(time.Duration(200+rand.IntN(1300)) * time.Millisecond)
		p.kill(t)
		kills++
		lastBefore = streamingLines(logPath)
		p = startCdcd(t, bin, cfg, logPath)
		select {
		case benchOut = <-bench:
		default:
		}
	}
	require.Contains(t, benchOut, "number of transactions actually processed", benchOut)
	// The last instance may find nothing left to do: before it is sent
	// SIGTERM it must be up (a signal before main installs its handler
	// kills the process), which a "capture streaming" line written after
	// it started shows (killed instances may never have written theirs).
	require.Eventually(t, func() bool { return streamingLines(logPath) > lastBefore }, 2*time.Minute, 50*time.Millisecond,
		"the last cdcd instance never started streaming")

	var state string
	for deadline := time.Now().Add(3 * time.Minute); ; {
		var ok bool
		if ok, state = drainedOnDisk(src, dst, trailDir); ok {
			break
		}
		select {
		case err := <-p.done:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("cdcd exited (%v); log tail:\n%s", err, tail(log, 3000))
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("target did not catch up: %s; log tail:\n%s", state, tail(log, 3000))
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	err = <-p.done
	p.done <- err
	require.NoError(t, err, "a clean stop exits 0")
	requireSameTables(t, src, dst, pgbenchTables)
	var n1, n2, txs int64
	require.NoError(t, queryRow(src, `SELECT count(*) FROM pgbench_history`, &n1))
	require.NoError(t, queryRow(dst, `SELECT count(*) FROM pgbench_history`, &n2))
	require.Equal(t, n1, n2, "pgbench_history has no key: a duplicate or a loss would show here")
	for _, l := range strings.Split(benchOut, "\n") {
		if v, ok := strings.CutPrefix(l, "number of transactions actually processed: "); ok {
			txs, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	require.Equal(t, txs, n1, "one history row per pgbench transaction")
	t.Logf("%d kills of cdcd during %d pgbench transactions; %d history rows, every table identical (%s); %s",
		kills, txs, n1, state, time.Since(start).Round(time.Second))
}

// TestTriggerBadInputThroughRun: through `cdcd run` with source.kind:
// trigger, (1) a table without a key (create: true, allow_keyless false)
// and (2) cdcd.change_log dropped by hand while cdcd runs each end the
// process with a non-zero exit and one clear last line naming the thing
// and the remedy; (3) a role without the right to create triggers does
// the same. After each fix — adding the key, `cdcd trigger install`,
// granting — a restart catches up and the target equals the source.
func TestTriggerBadInputThroughRun(t *testing.T) {
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	schema := []string{
		`CREATE TABLE orders (id int PRIMARY KEY, note text)`,
		`CREATE TABLE "no key" (a int, b text)`,
		`INSERT INTO orders SELECT g, 'before' FROM generate_series(1, 10) g`,
		`INSERT INTO "no key" SELECT g, 'before' FROM generate_series(1, 10) g`,
	}
	src.ExecT(t, "postgres", schema...)
	dst.ExecT(t, "postgres", schema...)
	tables := map[string]string{"orders": "id", `"no key"`: "a"}
	bin := buildCdcd(t)
	trailDir := t.TempDir()
	good := triggerYAML(src, dst, trailDir, "")
	cfg := filepath.Join(t.TempDir(), "cdcd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(good), 0o600))
	// run runs `cdcd run` until it exits (or timeout) and returns its
	// output and exit code.
	start := func(cfg string) (wait func(timeout time.Duration) (string, int)) {
		cmd := exec.Command(bin, "run", "--config", cfg)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-done; done <- nil })
		return func(timeout time.Duration) (string, int) {
			select {
			case err := <-done:
				done <- err
				var exit *exec.ExitError
				if errors.As(err, &exit) {
					return out.String(), exit.ExitCode()
				}
				require.NoError(t, err)
				return out.String(), 0
			case <-time.After(timeout):
				_ = cmd.Process.Kill()
				t.Fatalf("cdcd run did not exit within %s; output:\n%s", timeout, out.String())
				return "", 0
			}
		}
	}
	lastLine := func(s string) string {
		lines := strings.Split(strings.TrimSpace(s), "\n")
		return lines[len(lines)-1]
	}
	installed := func() (n int) {
		require.NoError(t, src.QueryRow(`SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'cdcd\_%'`, &n))
		return n
	}
	// drain runs a good `cdcd run` until it has caught up, stops it with
	// SIGTERM and compares the tables.
	drain := func() {
		t.Helper()
		r := startPipeline(t, good)
		waitDrained(t, r, src, 2*time.Minute)
		r.Stop(t)
		requireSameTables(t, src, dst, tables)
	}

	t.Run("a table without a key", func(t *testing.T) {
		out, code := start(cfg)(time.Minute)
		require.Equal(t, 1, code, out)
		line := lastLine(out)
		require.True(t, strings.HasPrefix(line, "cdcd: "), "one clear final line: %q", line)
		require.Contains(t, line, `"public"."no key"`, out)
		require.Contains(t, line, "add a primary key", out)
		require.Contains(t, line, "source.allow_keyless: true", out)
		require.Zero(t, installed(), "nothing installed")
		t.Logf("exit %d: %s", code, line)

		// The fix: a key on both sides; the restarted run installs and
		// captures what is written from then on.
		for _, c := range []*pgtest.Cluster{src, dst} {
			c.ExecT(t, "postgres", `ALTER TABLE "no key" ADD PRIMARY KEY (a)`)
		}
		r := startPipeline(t, good)
		waitInstalled(t, src, 2)
		src.ExecT(t, "postgres",
			`INSERT INTO "no key" SELECT g, 'after key' FROM generate_series(11, 20) g`,
			`UPDATE orders SET note = 'after key' WHERE id <= 5`)
		waitDrained(t, r, src, 2*time.Minute)
		r.Stop(t)
		requireSameTables(t, src, dst, tables)
	})

	t.Run("the change log dropped by hand", func(t *testing.T) {
		logPath := filepath.Join(t.TempDir(), "cdcd.log")
		p := startCdcd(t, bin, cfg, logPath)
		src.ExecT(t, "postgres", `INSERT INTO orders SELECT g, 'running' FROM generate_series(11, 30) g`)
		require.Eventually(t, func() bool { ok, _ := drainedOnDisk(src, dst, trailDir); return ok },
			2*time.Minute, 50*time.Millisecond, "cdcd did not apply the first writes")
		requireSameTables(t, src, dst, tables)

		src.ExecT(t, "postgres", `DROP TABLE cdcd.change_log`)
		err := src.Exec(context.Background(), "postgres", `INSERT INTO orders VALUES (1000, 'while dropped')`)
		require.ErrorContains(t, err, "change_log", "a write to a captured table fails rather than go uncaptured")
		var exitErr error
		select {
		case exitErr = <-p.done:
			p.done <- exitErr
		case <-time.After(time.Minute):
			t.Fatal("cdcd kept running without its change log")
		}
		log, _ := os.ReadFile(logPath)
		var exit *exec.ExitError
		require.ErrorAs(t, exitErr, &exit, "%s", log)
		require.Equal(t, 1, exit.ExitCode(), "%s", log)
		line := lastLine(string(log))
		require.True(t, strings.HasPrefix(line, "cdcd: "), "one clear final line: %q", line)
		require.Contains(t, line, "cdcd.change_log is missing", line)
		require.Contains(t, line, "cdcd trigger install --config", line)
		t.Logf("exit %d: %s", exit.ExitCode(), line)

		// The fix named in the line, then a restart; the writes after it
		// are captured, nothing committed before the drop was lost.
		out, err := exec.Command(bin, "trigger", "install", "--config", cfg).CombinedOutput()
		require.NoError(t, err, "%s", out)
		src.ExecT(t, "postgres",
			`INSERT INTO orders VALUES (1000, 'after reinstall')`,
			`UPDATE "no key" SET b = 'after reinstall' WHERE a % 2 = 0`,
			`DELETE FROM orders WHERE id BETWEEN 20 AND 25`)
		drain()
		var n int
		require.NoError(t, dst.QueryRow(`SELECT count(*) FROM orders WHERE note = 'after reinstall'`, &n))
		require.Equal(t, 1, n)
	})

	t.Run("a role without the right to create triggers", func(t *testing.T) {
		src.ExecT(t, "postgres", `CREATE TABLE extra (id int PRIMARY KEY, v text)`, `CREATE ROLE weak LOGIN`,
			`GRANT USAGE ON SCHEMA cdcd TO weak`, `GRANT SELECT, DELETE ON cdcd.change_log TO weak`,
			`GRANT SELECT ON ALL TABLES IN SCHEMA cdcd TO weak`)
		dst.ExecT(t, "postgres", `CREATE TABLE extra (id int PRIMARY KEY, v text)`)
		tables["extra"] = "id"
		weak := strings.Replace(good, "postgres://postgres@", "postgres://weak@", 1)
		require.NotEqual(t, good, weak)
		weakCfg := filepath.Join(t.TempDir(), "weak.yaml")
		require.NoError(t, os.WriteFile(weakCfg, []byte(weak), 0o600))
		out, code := start(weakCfg)(time.Minute)
		require.Equal(t, 1, code, out)
		line := lastLine(out)
		require.True(t, strings.HasPrefix(line, "cdcd: "), "one clear final line: %q", line)
		require.Contains(t, line, "weak", out)
		require.Contains(t, line, `"public"."extra"`, out)
		require.Contains(t, line, "GRANT", out)
		t.Logf("exit %d: %s", code, line)

		// Installed by a role that may (the one of the good config): the
		// changes wait in the change log, and a good run applies them.
		src.ExecT(t, "postgres", `INSERT INTO orders VALUES (2000, 'before install of extra')`)
		out2, err := exec.Command(bin, "trigger", "install", "--config", cfg).CombinedOutput()
		require.NoError(t, err, "%s", out2)
		src.ExecT(t, "postgres", `INSERT INTO extra SELECT g, 'x' FROM generate_series(1, 5) g`)
		drain()
	})
}
