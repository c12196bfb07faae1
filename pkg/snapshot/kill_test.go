package snapshot_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/snapshot"
)

// TestSnapshotKill9Resume SIGKILLs `cdcd run` in the middle of a snapshot
// while a writer changes the table, and restarts it: the chunks loaded
// before the kill are not copied again (each chunk is recorded exactly once
// in the target's snapshot_chunks table, and the restart says so), and the
// target converges to the source.
func TestSnapshotKill9Resume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the cdcd binary")
	}
	bin := pgtest.BuildCdcdT(t)
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	src.ExecT(t, "postgres",
		`CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL, pad text)`,
		`INSERT INTO big SELECT g, g % 1000, repeat('p', 50) FROM generate_series(1, 1000000) g`,
		`ANALYZE big`,
		// Keyless and large enough to be split into page ranges (TID
		// range scans); copied after big, so whole under the new snapshot.
		`CREATE TABLE nokey (a int, b text)`,
		`INSERT INTO nokey SELECT g, 'k' || g FROM generate_series(1, 120000) g`,
		`ANALYZE nokey`,
	)
	dir := t.TempDir()
	trailDir := filepath.Join(dir, "trail")
	cfg := filepath.Join(dir, "cdcd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(yamlConfig(src, dst, trailDir, `
snapshot: { mode: initial, parallelism: 2, chunk_rows: 50000 }
schema: { create: true }
`)), 0o600))
	start := func(log *lockedBuffer) *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", cfg)
		cmd.Stdout, cmd.Stderr = log, log
		require.NoError(t, cmd.Start())
		return cmd
	}
	chunks := func() (n, rows int64) {
		_ = dst.QueryRow(`SELECT count(*), coalesce(sum(rows), 0) FROM cdcd.snapshot_chunks`, &n, &rows)
		return n, rows
	}
	w := startWriter(t, src, "big", 1000000)
	stopNokey := make(chan struct{})
	nokeyDone := make(chan struct{})
	go func() { // inserts only: a keyless table cannot take updates
		defer close(nokeyDone)
		for {
			select {
			case <-stopNokey:
				return
			case <-time.After(5 * time.Millisecond):
			}
			_ = src.Exec(t.Context(), "postgres", "INSERT INTO nokey VALUES (-1, 'stream')")
		}
	}()

	var log1 lockedBuffer
	cmd := start(&log1)
	if !assert.Eventually(t, func() bool { n, _ := chunks(); return n >= 4 }, time.Minute, 10*time.Millisecond) {
		t.Fatalf("no chunks loaded: %s", log1.String())
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	before, _ := chunks()
	require.Less(t, before, int64(20), "killed before the snapshot finished")
	t.Logf("killed with %d of 23 chunks loaded", before)

	var log2 lockedBuffer
	cmd = start(&log2)
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	var stateErr error
	if !assert.Eventually(t, func() bool {
		st, err := snapshot.LoadState(trailDir, "target")
		stateErr = err
		return err != nil || (st != nil && st.Complete)
	}, 2*time.Minute, 50*time.Millisecond) {
		t.Fatalf("snapshot not complete: %s", log2.String())
	}
	require.NoError(t, stateErr)
	n := w.stop(t)
	close(stopNokey)
	<-nokeyDone
	mark := src.MarkerT(t)
	if !assert.Eventually(t, func() bool {
		var lsn string
		if err := dst.QueryRow(`SELECT end_lsn::text FROM cdcd.checkpoint WHERE name = 'target'`, &lsn); err != nil {
			return false
		}
		l, _ := change.ParseLSN(lsn)
		return l > mark
	}, 2*time.Minute, 50*time.Millisecond) {
		t.Fatalf("stream not caught up: %s", log2.String())
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "a clean stop exits 0: %s", log2.String())

	total, rows := chunks()
	require.Equal(t, int64(23), total, "every chunk recorded exactly once (big's 20 key ranges, nokey's 3 page ranges)")
	var pageChunks int64
	require.NoError(t, dst.QueryRow(`SELECT count(*) FROM cdcd.snapshot_chunks WHERE chunk LIKE 'public.nokey#%'`, &pageChunks))
	require.Equal(t, int64(3), pageChunks, "nokey split into page ranges")
	require.Contains(t, log2.String(), "chunks copied before are not copied again")
	require.Contains(t, log2.String(), "snapshot: resuming")
	requireSame(t, src, dst, "big", "id")
	requireSame(t, src, dst, "nokey", "a, b")
	t.Logf("resumed: %d chunks loaded before the kill were skipped; %d rows copied in all; %d writes during the test; target equals source", before, rows, n)
}

// lockedBuffer collects a child process's output: exec copies into it from
// its own goroutine while the test reads it for failure messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
