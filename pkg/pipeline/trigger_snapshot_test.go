package pipeline_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/snapshot"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

// TestTriggerSnapshotWhileWriting: an initial snapshot with the trigger
// source into an empty target (schema creation on), while four clients run
// pgbench-like transactions throughout the copy, and one transaction that
// wrote before cdcd started stays open until the copy is done. The
// boundary between copy and stream is exact: pgbench_history is keyless
// and insert-only, so a transaction both copied and streamed would double
// its row there, and one neither copied nor streamed would lose it; the
// target must equal the source table by table, row for row.
func TestTriggerSnapshotWhileWriting(t *testing.T) {
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	pgbench(t, src, "-i", "-q", "-s", "2")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	setup, err := pgx.Connect(ctx, src.DSN("postgres"))
	require.NoError(t, err)
	defer setup.Close(context.WithoutCancel(ctx))
	tables, err := trigger.Tables(ctx, setup, nil)
	require.NoError(t, err)
	require.NoError(t, trigger.Install(ctx, setup, tables, trigger.Options{AllowKeyless: true}))

	// Captured (the triggers exist) but not committed when the snapshot
	// is exported: in no copy, so the stream must deliver it.
	long, err := pgx.Connect(ctx, src.DSN("postgres"))
	require.NoError(t, err)
	defer long.Close(context.WithoutCancel(ctx))
	longTx, err := long.Begin(ctx)
	require.NoError(t, err)
	_, err = longTx.Exec(ctx, `INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 424242, now())`)
	require.NoError(t, err)

	var txs atomic.Int64
	wctx, stopWriters := context.WithCancel(ctx)
	defer stopWriters()
	g, gctx := errgroup.WithContext(wctx)
	for range 4 {
		g.Go(func() error { return pgbenchClient(gctx, src, &txs) })
	}
	require.Eventually(t, func() bool { return txs.Load() >= 50 }, time.Minute, 10*time.Millisecond, "writers did not start")

	r := startPipeline(t, triggerYAML(src, dst, t.TempDir(), "allow_keyless: true")+`
snapshot: { mode: initial, parallelism: 2, chunk_rows: 50000 }
schema: { create: true }
`)
	atStart := txs.Load()
	require.Eventually(t, func() bool { return r.P.Snapshots()[0].Progress().Complete }, 3*time.Minute, 20*time.Millisecond,
		"snapshot not complete: %+v", r.P.Snapshots()[0].Progress())
	duringCopy := txs.Load() - atStart
	after := txs.Load() + 200
	require.Eventually(t, func() bool { return txs.Load() >= after }, time.Minute, 10*time.Millisecond, "writers stalled after the copy")
	stopWriters()
	require.NoError(t, g.Wait())
	require.NoError(t, longTx.Commit(ctx))

	waitDrained(t, r, src, 2*time.Minute)
	r.Stop(t)
	requireSameTables(t, src, dst, pgbenchTables)
	var longRows int64
	require.NoError(t, dst.QueryRow(`SELECT count(*) FROM pgbench_history WHERE delta = 424242`, &longRows))
	require.EqualValues(t, 1, longRows, "the transaction open across the export arrived once")
	p := r.P.Snapshots()[0].Progress()
	var chunks int
	for _, tp := range p.Tables {
		chunks += tp.Chunks
	}
	require.Greater(t, chunks, len(p.Tables), "the 200k-row table is split into key ranges")
	t.Logf("snapshot with the trigger source: %d tables, %d chunks; %d transactions ran during the copy, %d in all; target equals source",
		len(p.Tables), chunks, duringCopy, txs.Load())
}

// pgbenchClient runs pgbench's TPC-B-like transaction until ctx ends,
// counting the committed ones.
func pgbenchClient(ctx context.Context, c *pgtest.Cluster, txs *atomic.Int64) error {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for ctx.Err() == nil {
		aid, tid, bid, delta := 1+rand.IntN(200000), 1+rand.IntN(20), 1+rand.IntN(2), rand.IntN(10001)-5000
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			for _, q := range []string{
				fmt.Sprintf(`UPDATE pgbench_accounts SET abalance = abalance + %d WHERE aid = %d`, delta, aid),
				fmt.Sprintf(`UPDATE pgbench_tellers SET tbalance = tbalance + %d WHERE tid = %d`, delta, tid),
				fmt.Sprintf(`UPDATE pgbench_branches SET bbalance = bbalance + %d WHERE bid = %d`, delta, bid),
				fmt.Sprintf(`INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (%d, %d, %d, %d, now())`, tid, bid, aid, delta),
			} {
				if _, err := tx.Exec(ctx, q); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		txs.Add(1)
	}
	return nil
}

// TestTriggerSnapshotKill9Resume SIGKILLs `cdcd run` (source.kind:
// trigger) in the middle of its initial snapshot while two clients write,
// and restarts it: the copy resumes under a new boundary the restarted
// source places, the chunks loaded before are not copied again, and every
// pgbench table — pgbench_history keyless, so a doubled or lost transaction
// would show — ends identical on the target.
func TestTriggerSnapshotKill9Resume(t *testing.T) {
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	pgbench(t, src, "-i", "-q", "-s", "4")
	bin := buildCdcd(t)
	trailDir := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "cdcd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(triggerYAML(src, dst, trailDir, "allow_keyless: true")+`
snapshot: { mode: initial, parallelism: 2, chunk_rows: 40000 }
schema: { create: true }
`), 0o600))
	out, err := exec.Command(bin, "trigger", "install", "--config", cfg).CombinedOutput()
	require.NoError(t, err, "%s", out)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var txs atomic.Int64
	wctx, stopWriters := context.WithCancel(ctx)
	defer stopWriters()
	g, gctx := errgroup.WithContext(wctx)
	for range 2 {
		g.Go(func() error { return pgbenchClient(gctx, src, &txs) })
	}
	chunks := func() (n int64) {
		_ = dst.QueryRow(`SELECT count(*) FROM cdcd.snapshot_chunks`, &n)
		return n
	}
	logPath := filepath.Join(t.TempDir(), "cdcd.log")
	p := startCdcd(t, bin, cfg, logPath)
	require.Eventually(t, func() bool { return chunks() >= 1 }, 2*time.Minute, 5*time.Millisecond, "no chunk loaded")
	p.kill(t)
	before := chunks()
	st, err := snapshot.LoadState(trailDir, "target")
	require.NoError(t, err)
	require.NotNil(t, st)
	require.False(t, st.Complete, "killed before the snapshot finished (%d chunks loaded)", before)

	p = startCdcd(t, bin, cfg, logPath)
	require.Eventually(t, func() bool {
		st, err := snapshot.LoadState(trailDir, "target")
		return err == nil && st != nil && st.Complete
	}, 3*time.Minute, 50*time.Millisecond, "snapshot not complete after the restart")
	after := txs.Load() + 100
	require.Eventually(t, func() bool { return txs.Load() >= after }, time.Minute, 10*time.Millisecond, "writers stalled")
	stopWriters()
	require.NoError(t, g.Wait())

	var state string
	require.Eventually(t, func() bool {
		var ok bool
		ok, state = drainedOnDisk(src, dst, trailDir)
		return ok
	}, 3*time.Minute, 50*time.Millisecond, "not drained: %s", state)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	err = <-p.done
	p.done <- err
	log, _ := os.ReadFile(logPath)
	require.NoError(t, err, "a clean stop exits 0: %s", tail(log, 3000))
	require.Contains(t, string(log), "snapshot: resuming")
	requireSameTables(t, src, dst, pgbenchTables)
	t.Logf("killed with %d chunks loaded; resumed; %d transactions written meanwhile; every table identical (%s)", before, txs.Load(), state)
}
