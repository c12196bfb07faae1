package trigger_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

const acctDDL = `CREATE TABLE acct (id int PRIMARY KEY, v bigint NOT NULL, note text)`

// workload runs many concurrent clients against table acct while poll runs
// in a loop, and returns the number of change rows its committed
// transactions wrote. Transaction "long" writes first, before any other,
// and commits last, after poll has run three more times once everything
// else committed. Every worker also interleaves two transactions on two
// connections so that the later-started one commits first. Rows are
// updated by many transactions (ids 1..20), inserted, re-keyed and
// deleted; some transactions roll back.
func workload(t *testing.T, c *pgtest.Cluster, poll func(ctx context.Context) error) int64 {
	ctx := testCtx(t)
	var written atomic.Int64
	setup := connect(t, c, "")
	tag, err := setup.Exec(ctx, `INSERT INTO acct SELECT g, 0, 'init' FROM generate_series(1, 50) g`)
	require.NoError(t, err)
	written.Add(tag.RowsAffected())

	long := connect(t, c, "")
	longTx, err := long.Begin(ctx)
	require.NoError(t, err)
	tag, err = longTx.Exec(ctx, `INSERT INTO acct VALUES (900001, 1, 'long'), (900002, 2, 'long')`)
	require.NoError(t, err)
	written.Add(tag.RowsAffected())

	var polls atomic.Int64
	workersDone := make(chan struct{})
	allCommitted := make(chan struct{})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { // the poller, polling all the time
		final := false
		for {
			select {
			case <-allCommitted:
				final = true
			default:
			}
			if err := poll(gctx); err != nil {
				return err
			}
			polls.Add(1)
			if final {
				return nil
			}
		}
	})
	const workers, txs = 6, 40
	wg, wctx := errgroup.WithContext(gctx)
	for w := range workers {
		wg.Go(func() error { return worker(wctx, c, w, txs, &written) })
	}
	g.Go(func() error {
		if err := wg.Wait(); err != nil {
			return err
		}
		close(workersDone)
		// Hold the long transaction open across three more polls.
		n0 := polls.Load()
		for polls.Load() < n0+3 {
			select {
			case <-gctx.Done():
				return gctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		tag, err := longTx.Exec(gctx, `UPDATE acct SET v = v + 10, note = 'long end' WHERE id IN (900001, 900002)`)
		if err != nil {
			return err
		}
		written.Add(tag.RowsAffected())
		if err := longTx.Commit(gctx); err != nil {
			return err
		}
		close(allCommitted)
		return nil
	})
	require.NoError(t, g.Wait())
	return written.Load()
}

// worker runs txs transactions of random kinds.
func worker(ctx context.Context, c *pgtest.Cluster, w, txs int, written *atomic.Int64) error {
	dsn := c.DSN("postgres")
	a, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer a.Close(context.WithoutCancel(ctx))
	b, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer b.Close(context.WithoutCancel(ctx))
	rng := rand.New(rand.NewPCG(uint64(w), 7))
	next := 100000 * (w + 1) // this worker's own ids
	var mine []int
	hot := func() []int { // distinct hot rows in id order (no deadlocks)
		ids := []int{1 + rng.IntN(20), 1 + rng.IntN(20), 1 + rng.IntN(20)}
		slices.Sort(ids)
		return slices.Compact(ids)
	}
	// run executes stmts in tx and returns the rows they affected.
	run := func(tx pgx.Tx, stmts ...string) (int64, error) {
		var n int64
		for _, s := range stmts {
			tag, err := tx.Exec(ctx, s)
			if err != nil {
				return 0, err
			}
			n += tag.RowsAffected()
		}
		return n, nil
	}
	for i := range txs {
		note := fmt.Sprintf("w%d-%d", w, i)
		var stmts []string
		for _, id := range hot() {
			stmts = append(stmts, fmt.Sprintf(`UPDATE acct SET v = v + 1, note = '%s' WHERE id = %d`, note, id))
		}
		switch rng.IntN(4) {
		case 0:
			stmts = append(stmts, fmt.Sprintf(`INSERT INTO acct VALUES (%d, 0, '%s'), (%d, 0, '%s')`, next, note, next+1, note))
			mine = append(mine, next, next+1)
			next += 2
		case 1:
			if len(mine) > 0 {
				id := mine[len(mine)-1]
				stmts = append(stmts, fmt.Sprintf(`UPDATE acct SET id = %d, note = 'rekeyed' WHERE id = %d`, next, id))
				mine[len(mine)-1] = next
				next++
			}
		case 2:
			if len(mine) > 0 {
				stmts = append(stmts, fmt.Sprintf(`DELETE FROM acct WHERE id = %d`, mine[0]))
				mine = mine[1:]
			}
		}
		// Interleave: the first transaction starts on a and writes, a
		// second one runs whole on b, then the first commits (a write on a
		// row the second does not touch).
		txA, err := a.Begin(ctx)
		if err != nil {
			return err
		}
		na, err := run(txA, fmt.Sprintf(`INSERT INTO acct VALUES (%d, 0, 'first')`, next))
		if err != nil {
			return err
		}
		firstID := next
		next++
		txB, err := b.Begin(ctx)
		if err != nil {
			return err
		}
		nb, err := run(txB, stmts...)
		if err != nil {
			return err
		}
		if rng.IntN(10) == 0 { // some transactions roll back
			if err := txB.Rollback(ctx); err != nil {
				return err
			}
			mine = slices.DeleteFunc(mine, func(id int) bool { return id >= firstID })
		} else {
			if err := txB.Commit(ctx); err != nil {
				return err
			}
			written.Add(nb)
		}
		if err := txA.Commit(ctx); err != nil {
			return err
		}
		written.Add(na)
		mine = append(mine, firstID)
	}
	return nil
}

// TestOutOfOrderCommits: reading by the PgQ rule, concurrently with the
// workload, delivers every committed change exactly once and in an order
// that rebuilds the table exactly.
func TestOutOfOrderCommits(t *testing.T) {
	c := pgtest.StartT(t, pgtest.Options{Name: "source"})
	c.ExecT(t, "postgres", acctDDL)
	conn := connect(t, c, "")
	ctx := testCtx(t)
	require.NoError(t, trigger.Install(ctx, conn, []trigger.Table{{Schema: "public", Name: "acct"}}, trigger.Options{}))
	pos, err := trigger.Start(ctx, conn)
	require.NoError(t, err)
	r := trigger.NewReader()
	rep := replica{}
	var read int64
	var polls, empty int
	written := workload(t, c, func(ctx context.Context) error {
		b, err := r.Poll(ctx, conn, pos)
		if err != nil {
			return err
		}
		for _, tx := range b.Txs {
			if err := rep.apply(tx); err != nil {
				return err
			}
			read += int64(len(tx.Changes))
		}
		polls++
		if len(b.Txs) == 0 {
			empty++
		}
		// The position is "durable" once applied: acknowledge it.
		if _, err := trigger.Ack(ctx, conn, b.Cur); err != nil {
			return err
		}
		pos = b.Cur
		return nil
	})
	require.Equal(t, written, read, "change rows read = change rows written by committed transactions")
	require.Equal(t, tableTexts(t, conn, "acct", 1), rep["public.acct"], "the replica equals the source table")
	var left int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM cdcd.change_log`).Scan(&left))
	require.Zero(t, left, "everything acknowledged was deleted")
	t.Logf("%d change rows in %d polls (%d empty), replica equals source", read, polls, empty)
}

// TestIDPollingLoses: on the same workload, the usual hand-written job
// (WHERE id > last_seen) loses the rows of transactions that commit after
// a later-started one was read. This is what the PgQ rule prevents.
func TestIDPollingLoses(t *testing.T) {
	c := pgtest.StartT(t, pgtest.Options{Name: "source"})
	c.ExecT(t, "postgres", acctDDL)
	conn := connect(t, c, "")
	ctx := testCtx(t)
	require.NoError(t, trigger.Install(ctx, conn, []trigger.Table{{Schema: "public", Name: "acct"}}, trigger.Options{}))
	var lastID, read int64
	written := workload(t, c, func(ctx context.Context) error {
		rows, err := conn.Query(ctx, `SELECT id FROM cdcd.change_log WHERE id > $1 ORDER BY id`, lastID)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		if len(ids) > 0 {
			lastID = ids[len(ids)-1]
			read += int64(len(ids))
		}
		return nil
	})
	var total int64
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM cdcd.change_log`).Scan(&total))
	require.Equal(t, written, total, "every committed change is in the log")
	require.Less(t, read, written, "polling by id lost rows")
	t.Logf("polling by id read %d of %d change rows: %d lost", read, written, written-read)
}
