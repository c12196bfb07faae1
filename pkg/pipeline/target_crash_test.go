package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// TestExactlyOnceUnderTargetCrash crashes the *target* (every server
// process SIGKILLed at once, the data directory left to crash recovery)
// several times while pgbench runs through `cdcd run`, whose postgres sink
// commits asynchronously. A crash takes back the commits whose WAL was not
// yet flushed; their positions were never reported applied, so the trail
// still holds them (it is purged every 200ms below the applied position,
// and the source is acknowledged only that far: capture.ack applied), and
// the sink, reconnecting, re-applies them after the older checkpoint row
// recovery left. Afterwards every table is identical and pgbench_history —
// no primary key, so a duplicate or a loss would show — has the source's
// row count. The target runs with fsync on, as a real server does.
func TestExactlyOnceUnderTargetCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the cdcd binary and crashes a server")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	// The target's WAL writer flushes asynchronous commits only every 10 s
	// (or per GB): most crashes then take back seconds of commits, which
	// only a trail that still holds them can give back — the trail is
	// purged every 200ms below what the sink reported applied, in 64 KiB
	// segments. A sink (or a decorator around it) that reported commits
	// applied before the target flushed them would lose rows here.
	dst := pgtest.StartT(t, pgtest.Options{Name: "target", Conf: map[string]string{
		"fsync": "on", "wal_writer_delay": "10s", "wal_writer_flush_after": "1GB"}})
	pgbench(t, src, "-i", "-s", "1", "-q")
	pgbench(t, dst, "-i", "-s", "1", "-q")
	bin := buildCdcd(t)
	cfg := filepath.Join(t.TempDir(), "cdcd.yaml")
	yaml := yamlConfig(src, nil, dst, t.TempDir()) + "capture: { ack: applied }\n"
	yaml = strings.Replace(yaml, "  segment_bytes: 1MiB\n  purge_interval: 1s\n", "  segment_bytes: 64KiB\n  purge_interval: 200ms\n", 1)
	require.Contains(t, yaml, "purge_interval: 200ms")
	require.NoError(t, os.WriteFile(cfg, []byte(yaml), 0o600))
	logPath := filepath.Join(t.TempDir(), "cdcd.log")
	start := func() (*exec.Cmd, chan error) {
		cmd := exec.Command(bin, "run", "--config", cfg)
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = f, f
		require.NoError(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait(); f.Close() }()
		return cmd, done
	}
	cmd, done := start()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waitSlot(t, src)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	bench := make(chan string, 1)
	var benchDone atomic.Bool
	go func() {
		bin, _ := pgtest.BinDir(pgtest.V15)
		out, err := exec.Command(filepath.Join(bin, "pgbench"), "-c", "4", "-j", "2", "-T", "30", "-n", src.DSN("postgres")).CombinedOutput()
		if err != nil {
			out = append(out, []byte(err.Error())...)
		}
		benchDone.Store(true)
		bench <- string(out)
	}()
	crashes, restarts, tookBack := 0, 0, 0
	// seq is the position the target's checkpoint row holds (-1 if none).
	seq := func() int64 {
		n := int64(-1)
		_ = queryRow(dst, `SELECT seq FROM cdcd.checkpoint WHERE name = 'target'`, &n)
		return n
	}
	// running restarts cdcd, as a service manager would, should it have
	// exited; it should not: a lost target is retried.
	running := func() {
		select {
		case err := <-done:
			restarts++
			t.Logf("cdcd exited (%v): restarting it", err)
			cmd, done = start()
		default:
		}
	}
	// committedSince waits until the sink has committed on the target past
	// checkpoint seq from — commits the WAL writer, flushing every 10 s,
	// has not flushed yet when they follow a recovery (which flushes) — or
	// until pgbench ended (false).
	committedSince := func(from int64) bool {
		for !benchDone.Load() {
			if seq() > from {
				return true
			}
			running()
			time.Sleep(20 * time.Millisecond) // poll interval
		}
		return false
	}
	// signal signals cdcd, unless it has exited (running restarts it).
	signal := func(sig os.Signal) {
		if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			require.NoError(t, err)
		}
	}
	// stable waits, with cdcd stopped, until a commit it sent before the
	// stop has landed: two equal reads 50ms apart.
	stable := func() int64 {
		for prev, deadline := seq(), time.Now().Add(30*time.Second); time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			n := seq()
			if n == prev {
				return n
			}
			prev = n
		}
		signal(syscall.SIGCONT)
		require.FailNow(t, "the checkpoint row kept moving for 30s with cdcd stopped")
		return 0
	}
	recovered := seq()
	for deadline := time.Now().Add(16 * time.Second); time.Now().Before(deadline) || crashes < 4; {
		// Crash while the target holds unflushed commits (a slow machine
		// may take seconds to resume the sink after a crash: wait for it),
		// at a random moment after them.
		if !committedSince(recovered) {
			break
		}
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond)
		// Every other crash pauses cdcd across it, so the sink's last
		// commit — whose WAL, on the partial page the WAL writer does not
		// write before its next flush, dies with the server — is the last
		// one before the crash, and the checkpoint row recovery leaves
		// shows whether the crash took commits back. (Unpaused, the sink
		// commits between the read and the kill, so a crash that took its
		// last commit back may leave a row newer than the one read; the
		// unpaused crashes are kept because they can land on a COMMIT in
		// flight, whose outcome the sink never learns.)
		paused := crashes%2 == 0
		if paused {
			signal(syscall.SIGSTOP)
		}
		before := seq() // committed, visible: not necessarily durable
		if paused {
			before = stable()
		}
		killErr := dst.Kill()
		if paused {
			signal(syscall.SIGCONT)
		}
		require.NoError(t, killErr)
		crashes++
		running()
		require.NoError(t, dst.Restart(ctx), "crash recovery")
		if recovered = seq(); recovered < before {
			tookBack++ // the crash took back commits: re-applied from the trail
			t.Logf("crash %d (cdcd paused: %v) took back commits: checkpoint seq %d before, %d after recovery", crashes, paused, before, recovered)
		}
	}
	require.GreaterOrEqual(t, crashes, 2,
		"after crash %d the sink committed nothing more on the target before pgbench ended: it could not resume (commits lost with the trail purged under them?):\n%s",
		crashes, func() []byte { log, _ := os.ReadFile(logPath); return tail(log, 3000) }())
	out := <-bench
	require.Contains(t, out, "number of transactions actually processed", out)
	m := marker(t, src)

	var lastErr error
	if !assert.Eventually(t, func() bool {
		running()
		var ok bool
		lastErr = queryRow(dst, fmt.Sprintf(`SELECT end_lsn > '%s'::pg_lsn FROM cdcd.checkpoint WHERE name = 'target'`, m), &ok)
		return lastErr == nil && ok
	}, 2*time.Minute, 100*time.Millisecond) {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("target did not catch up (%v); log tail:\n%s", lastErr, tail(log, 3000))
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-done, "a clean stop exits 0")
	requireSameTables(t, src, dst, pgbenchTables)
	var n1, n2 int64
	require.NoError(t, queryRow(src, `SELECT count(*) FROM pgbench_history`, &n1))
	require.NoError(t, queryRow(dst, `SELECT count(*) FROM pgbench_history`, &n2))
	require.Equal(t, n1, n2, "pgbench_history has no key: duplicates or losses would show here")
	log, err := os.ReadFile(logPath)
	require.NoError(t, err)
	retries := strings.Count(string(log), "retrying from its position")
	require.Positive(t, retries, "the sink met the crashes and retried")
	require.Zero(t, restarts, "cdcd retries a lost target rather than exiting:\n%s", tail(log, 3000))
	require.Positive(t, tookBack, "no crash took back a commit: the test proved nothing about re-applying")
	t.Logf("%d target crashes (%d took back commits), %d sink retries; %d history rows, identical", crashes, tookBack, retries, n1)
}
