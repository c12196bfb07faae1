package pipeline_test

import (
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

	"github.com/cdcd-io/cdcd/internal/dsqltest"
	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// TestDSQLFlavorExactlyOnceUnderKill9 runs `cdcd run` with a sink of flavor
// aurora-dsql against a PostgreSQL that enforces DSQL's rules (statement
// log, 3,000-row transactions, injected 40001 conflicts at commit), while
// pgbench writes and large source transactions (20,000-row UPDATEs, 5,000
// history rows in one INSERT) must be split into many target transactions.
// cdcd is SIGKILLed at random moments, so some kills land between the
// chunks of one source transaction. Afterwards every pgbench table is
// identical and pgbench_history, which has no key, has the source's exact
// row count; no statement DSQL rejects was sent.
func TestDSQLFlavorExactlyOnceUnderKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the cdcd binary")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "dsqltarget", Conf: dsqltest.Conf()})
	pgbench(t, src, "-i", "-s", "1", "-q")
	pgbench(t, dst, "-i", "-s", "1", "-q")
	dsqltest.Install(t, dst, "postgres")
	dsqltest.Watch(t, dst, "postgres", "public")
	dsqltest.InjectConflicts(t, dst, "postgres", 7)

	bin := buildCdcd(t)
	yaml := strings.Replace(yamlConfig(src, nil, dst, t.TempDir()), "    kind: postgres\n",
		"    kind: postgres\n    flavor: aurora-dsql\n    dsql: { region: us-east-1, max_tx_rows: 1000 }\n", 1)
	require.Contains(t, yaml, "aurora-dsql")
	cfg := filepath.Join(t.TempDir(), "cdcd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(yaml), 0o600))
	logPath := filepath.Join(t.TempDir(), "cdcd.log")
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", cfg)
		// Tokens are signed with these (offline); the trusting test server
		// ignores them.
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=secret",
			"AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent")
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = f, f
		require.NoError(t, cmd.Start())
		return cmd
	}
	cmd := start()
	waitSlot(t, src)

	bench := make(chan string, 1)
	go func() {
		bin, _ := pgtest.BinDir(pgtest.V15)
		out, err := exec.Command(filepath.Join(bin, "pgbench"), "-c", "2", "-j", "2", "-T", "20", "-n", src.DSN("postgres")).CombinedOutput()
		if err != nil {
			out = append(out, []byte(err.Error())...)
		}
		bench <- string(out)
	}()
	// Large source transactions keep coming until the kills are done.
	stopBig := make(chan struct{})
	big := make(chan error, 1)
	go func() {
		var err error
		for i := 1; err == nil; i++ {
			select {
			case <-stopBig:
				big <- nil
				return
			default:
			}
			err = src.Exec(t.Context(), "postgres",
				fmt.Sprintf("UPDATE pgbench_accounts SET abalance = abalance + %d WHERE aid <= 20000", i),
				"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) SELECT 1, 1, g, -1, now() FROM generate_series(1, 5000) g")
		}
		big <- err
	}()
	// midTx reports that the target holds part of a source transaction:
	// the checkpoint row carries a chunk mark.
	midTx := func() bool {
		var mid bool
		return queryRow(dst, `SELECT tx_changes > 0 FROM cdcd.checkpoint WHERE name = 'target'`, &mid) == nil && mid
	}
	kills, between := 0, 0
	for deadline := time.Now().Add(19 * time.Second); time.Now().Before(deadline) || kills < 10; {
		if kills%3 == 0 {
			// Every third kill lands between the chunks of a source
			// transaction: wait for the mark, then kill.
			require.Eventually(t, midTx, time.Minute, 5*time.Millisecond, "no partially applied source transaction seen")
			between++
		} else {
			// Not a wait for anything: the kill lands at a random moment.
			time.Sleep(time.Duration(200+rand.IntN(1300)) * time.Millisecond)
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		kills++
		cmd = start()
	}
	close(stopBig)
	out := <-bench
	require.Contains(t, out, "number of transactions actually processed", out)
	require.NoError(t, <-big)
	m := marker(t, src)

	var lastErr error
	if !assert.Eventually(t, func() bool {
		var done bool
		lastErr = queryRow(dst, fmt.Sprintf(`SELECT end_lsn::pg_lsn > '%s'::pg_lsn FROM cdcd.checkpoint WHERE name = 'target'`, m), &done)
		return lastErr == nil && done
	}, 3*time.Minute, 100*time.Millisecond) {
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
	require.Positive(t, dsqltest.Injected(t, dst, "postgres"), "conflicts were injected")
	stmts := dsqltest.Check(t, dst, "cdcd sink target")
	t.Logf("%d kills (%d between the chunks of a source transaction); %d history rows, identical; %d injected conflicts; %d statements checked against DSQL's rules",
		kills, between, n1, dsqltest.Injected(t, dst, "postgres"), len(stmts))
}
