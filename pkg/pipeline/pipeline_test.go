package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// TestPgbenchPrimaryPG15: pgbench on a PG15 primary, cdcd applying to a
// PG15 target; after draining, every table is identical.
func TestPgbenchPrimaryPG15(t *testing.T) {
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	pgbench(t, src, "-i", "-s", "1", "-q")
	pgbench(t, dst, "-i", "-s", "1", "-q")
	r := startPipeline(t, yamlConfig(src, nil, dst, t.TempDir()))
	waitSlot(t, src)
	pgbench(t, src, "-c", "4", "-j", "2", "-T", "8", "-n")
	r.WaitApplied(t, marker(t, src), 2*time.Minute)
	r.Stop(t)
	requireSameTables(t, src, dst, pgbenchTables)
}

// TestPgbenchStandbyPG17: the A → B → cdcd → C chain, decoding on a PG17
// physical standby.
func TestPgbenchStandbyPG17(t *testing.T) {
	primary := pgtest.StartT(t, pgtest.Options{Version: pgtest.V17, Name: "primary"})
	dst := pgtest.StartT(t, pgtest.Options{Version: pgtest.V17, Name: "target"})
	pgbench(t, primary, "-i", "-s", "1", "-q")
	pgbench(t, dst, "-i", "-s", "1", "-q")
	primary.ExecT(t, "postgres", `CREATE PUBLICATION cdcd FOR ALL TABLES`)
	standby := primary.StartStandbyT(t, pgtest.Options{})
	r := startPipeline(t, yamlConfig(standby, primary, dst, t.TempDir()))
	waitSlot(t, standby)
	pgbench(t, primary, "-c", "4", "-j", "2", "-T", "8", "-n")
	r.WaitApplied(t, marker(t, primary), 2*time.Minute)
	r.Stop(t)
	requireSameTables(t, primary, dst, pgbenchTables)
}

// TestApplyEdgeCases: TOAST left intact, key change, delete of a
// just-inserted row, many updates of one row in one transaction, truncate.
func TestApplyEdgeCases(t *testing.T) {
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	schema := []string{
		`CREATE TABLE docs (id int PRIMARY KEY, title text, body text)`,
		`ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL`,
		`CREATE TABLE items (id int PRIMARY KEY, qty int, note text)`,
		`CREATE TABLE gone (id int PRIMARY KEY, v text)`,
	}
	src.ExecT(t, "postgres", schema...)
	dst.ExecT(t, "postgres", schema...)
	r := startPipeline(t, yamlConfig(src, nil, dst, t.TempDir()))
	waitSlot(t, src)
	body := strings.Repeat("0123456789abcdef", 8192)
	src.ExecT(t, "postgres",
		`INSERT INTO docs VALUES (1, 't', '`+body+`'), (2, 't2', 'small')`,
		`INSERT INTO items SELECT g, g, 'n' FROM generate_series(1, 100) g`,
		`INSERT INTO gone SELECT g, 'x' FROM generate_series(1, 50) g`,
	)
	r.WaitApplied(t, marker(t, src), time.Minute)
	src.ExecT(t, "postgres",
		`UPDATE docs SET title = 'new title' WHERE id = 1`, // body unchanged TOAST
		`UPDATE items SET id = 1000 WHERE id = 2`,          // key change
		`BEGIN; INSERT INTO items VALUES (500, 1, 'tmp'); DELETE FROM items WHERE id = 500; COMMIT`,
		`DO $$ BEGIN FOR i IN 1..300 LOOP UPDATE items SET qty = qty + 1 WHERE id = 1; END LOOP; END $$`,
		`BEGIN; INSERT INTO gone VALUES (51, 'y'); TRUNCATE gone; INSERT INTO gone VALUES (1, 'after'); COMMIT`,
		`UPDATE items SET note = 'swap-a' WHERE id = 3`,
		`BEGIN; UPDATE items SET id = -1 WHERE id = 4; UPDATE items SET id = 4 WHERE id = 5; UPDATE items SET id = 5 WHERE id = -1; COMMIT`,
	)
	r.WaitApplied(t, marker(t, src), time.Minute)
	r.Stop(t)
	requireSameTables(t, src, dst, map[string]string{"docs": "id", "items": "id", "gone": "id"})
	var got string
	require.NoError(t, queryRow(dst, `SELECT body FROM docs WHERE id = 1`, &got))
	require.Equal(t, body, got, "the TOASTed value is intact after an update that did not touch it")
	var qty int
	require.NoError(t, queryRow(dst, `SELECT qty FROM items WHERE id = 1`, &qty))
	require.Equal(t, 301, qty)
}

// TestExactlyOnceUnderKill9 SIGKILLs `cdcd run` at random moments during a
// pgbench run; afterwards every table is identical and pgbench_history —
// which has no primary key, so a duplicate would show — has the source's
// row count.
func TestExactlyOnceUnderKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the cdcd binary")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	pgbench(t, src, "-i", "-s", "1", "-q")
	pgbench(t, dst, "-i", "-s", "1", "-q")
	bin := buildCdcd(t)
	cfg := filepath.Join(t.TempDir(), "cdcd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(yamlConfig(src, nil, dst, t.TempDir())), 0o600))
	logPath := filepath.Join(t.TempDir(), "cdcd.log")
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", cfg)
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = f, f
		require.NoError(t, cmd.Start())
		return cmd
	}
	first := start()
	waitSlot(t, src)

	bench := make(chan string, 1)
	go func() {
		bin, _ := pgtest.BinDir(pgtest.V15)
		out, err := exec.Command(filepath.Join(bin, "pgbench"), "-c", "4", "-j", "2", "-T", "20", "-n", src.DSN("postgres")).CombinedOutput()
		if err != nil {
			out = append(out, []byte(err.Error())...)
		}
		bench <- string(out)
	}()
	cmd := first
	kills := 0
	for deadline := time.Now().Add(19 * time.Second); time.Now().Before(deadline) || kills < 10; {
		// Not a wait for anything: the kill lands at a random moment.
		time.Sleep(time.Duration(200+rand.IntN(1300)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		kills++
		cmd = start()
	}
	out := <-bench
	require.Contains(t, out, "number of transactions actually processed", out)
	m := marker(t, src)

	// Wait for the last instance to catch up, then stop it cleanly.
	var lastErr error
	if !assert.Eventually(t, func() bool {
		var done bool
		lastErr = queryRow(dst, fmt.Sprintf(`SELECT end_lsn > '%s'::pg_lsn FROM cdcd.checkpoint WHERE name = 'target'`, m), &done)
		return lastErr == nil && done
	}, 2*time.Minute, 100*time.Millisecond) {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("target did not catch up (%v); log tail:\n%s", lastErr, tail(log, 3000))
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "a clean stop exits 0")
	requireSameTables(t, src, dst, pgbenchTables)
	var n1, n2 int64
	require.NoError(t, queryRow(src, `SELECT count(*) FROM pgbench_history`, &n1))
	require.NoError(t, queryRow(dst, `SELECT count(*) FROM pgbench_history`, &n2))
	require.Equal(t, n1, n2, "pgbench_history has no key: duplicates would show here")
	t.Logf("%d kills; %d history rows, identical", kills, n1)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// TestBadTargetsFailCleanly: a missing target table, a wrong password and
// an unreachable target each give one clear line and a non-zero exit; the
// trail and checkpoints stay intact and a later good run catches up.
func TestBadTargetsFailCleanly(t *testing.T) {
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	src.ExecT(t, "postgres", `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	bin := buildCdcd(t)
	trailDir := t.TempDir()
	good := yamlConfig(src, nil, dst, trailDir)
	// start starts `cdcd run`; wait waits for it to exit and returns its
	// standard error.
	start := func(yaml string, timeout time.Duration) (wait func() (string, error)) {
		cfg := filepath.Join(t.TempDir(), "cdcd.yaml")
		require.NoError(t, os.WriteFile(cfg, []byte(yaml), 0o600))
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		t.Cleanup(cancel) // a test failing before wait stops the process
		cmd := exec.CommandContext(ctx, bin, "run", "--config", cfg)
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		return func() (string, error) {
			defer cancel()
			err := cmd.Wait()
			return stderr.String(), err
		}
	}
	run := func(yaml string, timeout time.Duration) (string, error) { return start(yaml, timeout)() }
	lastLine := func(s string) string {
		lines := strings.Split(strings.TrimSpace(s), "\n")
		return lines[len(lines)-1]
	}

	// 1. Missing target table: the source changes, made once capture
	// streams, wait in the trail.
	wait := start(good, time.Minute)
	waitSlot(t, src)
	src.ExecT(t, "postgres", `INSERT INTO t VALUES (1, 'a'), (2, 'b')`)
	out, err := wait()
	require.Error(t, err)
	require.Contains(t, lastLine(out), `target table public.t does not exist`, out)
	require.True(t, strings.HasPrefix(lastLine(out), "cdcd: "), "one clear final line: %q", lastLine(out))

	// 2. Wrong password, 3. unreachable target: clear errors, no secrets.
	dst.ExecT(t, "postgres", `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	badPW := strings.Replace(good, "postgres://postgres@", "postgres://postgres:hunter2@", 1)
	badPW = strings.Replace(badPW, fmt.Sprintf("%d/postgres", dst.Port), fmt.Sprintf("%d/nosuchdb", dst.Port), 1)
	out, err = run(badPW, time.Minute)
	require.Error(t, err)
	require.NotContains(t, out, "hunter2", "passwords never appear in output")
	require.Contains(t, lastLine(out), "nosuchdb")

	// Finally a good run catches up from the trail.
	r := startPipeline(t, good)
	r.WaitApplied(t, marker(t, src), time.Minute)
	r.Stop(t)
	requireSameTables(t, src, dst, map[string]string{"t": "id"})
}
