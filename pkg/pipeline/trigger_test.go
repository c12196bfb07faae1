package pipeline_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/internal/typezoo"
)

// triggerYAML is a cdcd config from source (kind trigger, create: true) to
// one postgres sink; extra is YAML added to the source section.
func triggerYAML(source, target *pgtest.Cluster, trailDir, extra string) string {
	return fmt.Sprintf(`
source:
  kind: trigger
  dsn: %q
  create: true
  poll_interval: 50ms
%s
trail:
  dir: %q
  segment_bytes: 1MiB
  purge_interval: 1s
sinks:
  - name: target
    kind: postgres
    dsn: %q
    batch: { max_rows: 5000, max_delay: 50ms }
log:
  format: text
`, source.DSN("postgres"), indentYAML(extra, "  "), trailDir, target.DSN("postgres"))
}

func indentYAML(s, by string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			b.WriteString(by + strings.TrimSpace(l) + "\n")
		}
	}
	return b.String()
}

// waitInstalled waits until the change log exists and triggers tables
// carry cdcd's four triggers each: from then on every write is captured.
func waitInstalled(t testing.TB, src *pgtest.Cluster, tables int) {
	t.Helper()
	var n int
	var err error
	require.Eventually(t, func() bool {
		err = src.QueryRow(`SELECT CASE WHEN to_regclass('cdcd.change_log') IS NULL THEN -1
			ELSE (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'cdcd\_%') END`, &n)
		return err == nil && n == 4*tables
	}, time.Minute, 20*time.Millisecond, "triggers not installed: %d (%v)", n, err)
}

// changeLogRows counts the committed rows in the source's change log: the
// changes not yet acknowledged (deleted) by capture.
func changeLogRows(src *pgtest.Cluster) (int64, error) {
	var n int64
	err := src.QueryRow(`SELECT count(*) FROM cdcd.change_log`, &n)
	return n, err
}

// waitDrained waits until the trigger source is drained into the sink:
// the change log holds no committed row (capture deletes rows only once
// the trail holds them durably, and updates its durable position before
// it deletes) and the sink has applied up to capture's durable position.
// Nothing may be written to the captured tables meanwhile.
func waitDrained(t testing.TB, r *running, src *pgtest.Cluster, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left, err := changeLogRows(src)
		durable := r.P.Capture().Stats().Durable
		applied := r.P.Workers()[0].Stats()
		if err == nil && left == 0 && applied.Position.EndLSN == durable {
			return
		}
		select {
		case err := <-r.Done:
			r.Done <- err
			t.Fatalf("pipeline stopped early: %v (sink: %s)", err, applied.LastError)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not drained after %s: change log %d rows (%v), capture %+v, sink %+v",
				timeout, left, err, r.P.Capture().Stats(), applied)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// waitTarget waits until query returns want on the target.
func waitTarget(t testing.TB, r *running, dst *pgtest.Cluster, query string, want int64) {
	t.Helper()
	var got int64
	var err error
	deadline := time.Now().Add(time.Minute)
	for {
		if err = dst.QueryRow(query, &got); err == nil && got == want {
			return
		}
		select {
		case err := <-r.Done:
			r.Done <- err
			t.Fatalf("pipeline stopped early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s on the target: %d (%v), want %d; capture %+v; sink %+v",
				query, got, err, want, r.P.Capture().Stats(), r.P.Workers()[0].Stats())
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

const acctDDL = `CREATE TABLE acct (id int PRIMARY KEY, v bigint NOT NULL, note text);
CREATE TABLE beacon (n int PRIMARY KEY)`

// TestTriggerOutOfOrderCommits: many clients write concurrently — each one
// interleaving two transactions so that the later-started one commits
// first, hot rows updated by many transactions, re-keys, deletes,
// rollbacks and rolled-back savepoints — while one transaction that
// started first, before all of them, stays open until capture has read and
// acknowledged everything else and three more polls have delivered a
// beacon each; only then does it update rows and commit. Timestamp or id
// polling loses exactly this transaction (TestIDPollingLoses in
// pkg/source/trigger shows it on the same kind of workload). Through `kind:
// trigger` into a PostgreSQL target: the target equals the source, and the
// change rows written by committed statements equal the changes capture
// wrote to the trail and the rows the sink applied.
func TestTriggerOutOfOrderCommits(t *testing.T) {
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	src.ExecT(t, "postgres", acctDDL)
	dst.ExecT(t, "postgres", acctDDL)
	r := startPipeline(t, triggerYAML(src, dst, t.TempDir(), ""))
	waitInstalled(t, src, 2)
	start := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var written atomic.Int64
	setup, err := pgx.Connect(ctx, src.DSN("postgres"))
	require.NoError(t, err)
	defer setup.Close(context.WithoutCancel(ctx))
	tag, err := setup.Exec(ctx, `INSERT INTO acct SELECT g, 0, 'init' FROM generate_series(1, 50) g`)
	require.NoError(t, err)
	written.Add(tag.RowsAffected())

	// The long transaction takes its transaction id and writes before any
	// other transaction of the workload starts.
	long, err := pgx.Connect(ctx, src.DSN("postgres"))
	require.NoError(t, err)
	defer long.Close(context.WithoutCancel(ctx))
	longTx, err := long.Begin(ctx)
	require.NoError(t, err)
	tag, err = longTx.Exec(ctx, `INSERT INTO acct VALUES (900001, 1, 'long'), (900002, 2, 'long')`)
	require.NoError(t, err)
	written.Add(tag.RowsAffected())

	const clients, txs = 8, 40
	g, gctx := errgroup.WithContext(ctx)
	for c := range clients {
		g.Go(func() error { return outOfOrderClient(gctx, src, c, txs, &written) })
	}
	require.NoError(t, g.Wait())

	// Everything but the long transaction is captured and acknowledged:
	// the reader has moved past transactions that started after it.
	require.Eventually(t, func() bool { n, err := changeLogRows(src); return err == nil && n == 0 },
		2*time.Minute, 20*time.Millisecond, "capture did not read past the open transaction")
	// Three more polls, each delivering a beacon committed after the
	// previous one was applied, while the long transaction stays open.
	for n := int64(1); n <= 3; n++ {
		src.ExecT(t, "postgres", fmt.Sprintf(`INSERT INTO beacon VALUES (%d)`, n))
		written.Add(1)
		waitTarget(t, r, dst, `SELECT count(*) FROM beacon`, n)
	}
	var early int64
	require.NoError(t, dst.QueryRow(`SELECT count(*) FROM acct WHERE id > 900000`, &early))
	require.Zero(t, early, "nothing of the open transaction reached the target")

	// The long transaction now updates hot rows the others updated, and
	// its own rows, and commits last.
	tag, err = longTx.Exec(ctx, `UPDATE acct SET v = v + 1000, note = 'long end' WHERE id IN (1, 2, 3, 900001, 900002)`)
	require.NoError(t, err)
	written.Add(tag.RowsAffected())
	require.NoError(t, longTx.Commit(ctx))

	waitDrained(t, r, src, 2*time.Minute)
	cs, ws := r.P.Capture().Stats(), r.P.Workers()[0].Stats()
	r.Stop(t)
	requireSameTables(t, src, dst, map[string]string{"acct": "id", "beacon": "n"})
	var longRows int64
	require.NoError(t, dst.QueryRow(`SELECT count(*) FROM acct WHERE note = 'long end'`, &longRows))
	require.EqualValues(t, 5, longRows, "the transaction that committed last arrived")

	// Capture's Changes counts each change once, when the trail holds it
	// durably (re-delivered transactions are skipped, not counted): the
	// exact count of what was captured. The sink's Rows counts the rows of
	// every successfully applied batch, exact while no batch was retried.
	require.EqualValues(t, written.Load(), cs.Changes, "changes captured = change rows written by committed statements")
	require.Zero(t, ws.Retries, "no apply retry (Rows would count a retried chunk twice): %s", ws.LastError)
	require.EqualValues(t, written.Load(), ws.Rows, "rows applied = change rows written")
	t.Logf("%d clients × %d transactions: %d change rows written, %d captured in %d transactions, %d applied; %s",
		clients, txs, written.Load(), cs.Changes, cs.Transactions, ws.Rows, time.Since(start).Round(time.Millisecond))
}

// outOfOrderClient runs txs rounds on two connections. Each round starts a
// transaction on a that writes a row, runs a whole transaction on b —
// updates of hot rows shared by all clients, and an insert, re-key or
// delete of the client's own rows; sometimes rolled back, sometimes with a
// rolled-back savepoint — and only then commits a: a started first,
// committed last. It adds the rows affected by committed statements to
// written.
func outOfOrderClient(ctx context.Context, c *pgtest.Cluster, client, txs int, written *atomic.Int64) error {
	a, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	defer a.Close(context.WithoutCancel(ctx))
	b, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	defer b.Close(context.WithoutCancel(ctx))
	rng := rand.New(rand.NewPCG(uint64(client), 11))
	next := 100000 * (client + 1) // this client's own ids
	var mine []int
	exec := func(tx pgx.Tx, stmts ...string) (int64, error) {
		var n int64
		for _, s := range stmts {
			tag, err := tx.Exec(ctx, s)
			if err != nil {
				return 0, fmt.Errorf("client %d: %s: %w", client, s, err)
			}
			n += tag.RowsAffected()
		}
		return n, nil
	}
	for i := range txs {
		note := fmt.Sprintf("c%d-%d", client, i)
		// Hot rows in id order: every client updates them, without deadlocks.
		hot := slices.Compact(slices.Sorted(slices.Values([]int{1 + rng.IntN(20), 1 + rng.IntN(20), 1 + rng.IntN(20)})))
		var stmts []string
		for _, id := range hot {
			stmts = append(stmts, fmt.Sprintf(`UPDATE acct SET v = v + 1, note = '%s' WHERE id = %d`, note, id))
		}
		added := mine
		switch rng.IntN(4) {
		case 0:
			stmts = append(stmts, fmt.Sprintf(`INSERT INTO acct VALUES (%d, 0, '%s'), (%d, 0, '%s')`, next, note, next+1, note))
			added = append(slices.Clone(mine), next, next+1)
			next += 2
		case 1:
			if len(mine) > 0 {
				stmts = append(stmts, fmt.Sprintf(`UPDATE acct SET id = %d, note = 'rekeyed' WHERE id = %d`, next, mine[len(mine)-1]))
				added = append(slices.Clone(mine[:len(mine)-1]), next)
				next++
			}
		case 2:
			if len(mine) > 0 {
				stmts = append(stmts, fmt.Sprintf(`DELETE FROM acct WHERE id = %d`, mine[0]))
				added = slices.Clone(mine[1:])
			}
		}

		txA, err := a.Begin(ctx)
		if err != nil {
			return err
		}
		na, err := exec(txA, fmt.Sprintf(`INSERT INTO acct VALUES (%d, 0, 'first')`, next))
		if err != nil {
			return err
		}
		firstID := next
		next++

		txB, err := b.Begin(ctx)
		if err != nil {
			return err
		}
		nb, err := exec(txB, stmts...)
		if err != nil {
			return err
		}
		if rng.IntN(5) == 0 { // a savepoint whose writes roll back
			if _, err := exec(txB, `SAVEPOINT s`, fmt.Sprintf(`UPDATE acct SET note = 'undone' WHERE id = %d`, hot[0]),
				fmt.Sprintf(`INSERT INTO acct VALUES (%d, 0, 'undone')`, next), `ROLLBACK TO SAVEPOINT s`); err != nil {
				return err
			}
			next++
		}
		if rng.IntN(10) == 0 { // a transaction that rolls back
			if err := txB.Rollback(ctx); err != nil {
				return err
			}
		} else {
			if err := txB.Commit(ctx); err != nil {
				return err
			}
			written.Add(nb)
			mine = added
		}
		if err := txA.Commit(ctx); err != nil {
			return err
		}
		written.Add(na)
		mine = append(mine, firstID)
	}
	return nil
}

// triggerZooWrites are the zoo's rows plus 500 more of varying size.
var triggerZooWrites = append(append([]string(nil), typezoo.Rows...),
	`INSERT INTO zoo (id, kind, ia, ta, big) SELECT 100 + g, 'many ' || g, ARRAY[g, -g], ARRAY[g::text, NULL], repeat(g::text, g * 10)
	   FROM generate_series(1, 500) g`)

// triggerZooUpdates run in a later transaction: unchanged TOAST values,
// key changes, deletes, a multi-row update and a NULL-ing update.
var triggerZooUpdates = []string{
	`SET timezone = 'America/St_Johns'; SET datestyle = 'German'`,
	`UPDATE zoo SET kind = 'updated', d = '-0', r = 'Infinity' WHERE id = 1`,
	`UPDATE zoo SET id = 20 WHERE id = 2`,
	`UPDATE zoo SET kind = 'toast updated' WHERE id = 4`,
	`DELETE FROM zoo WHERE id = 3`,
	`UPDATE zoo SET ta = NULL, tstz = now(), iv = '-1 day' WHERE id BETWEEN 200 AND 300`,
	`DELETE FROM zoo WHERE id % 7 = 0 AND id > 100`,
}

// zooTexts is every row of zoo as record text, in id order, and their md5.
func zooTexts(t testing.TB, c *pgtest.Cluster) (rows int64, md5 string) {
	t.Helper()
	require.NoError(t, c.QueryRow(`SELECT count(*), md5(string_agg(z::text, E'\n' ORDER BY id)) FROM zoo z`, &rows, &md5))
	return rows, md5
}

// TestTriggerTypeZoo: a column of each of ~55 types, extreme values,
// TOAST-sized text and bytea (256 KB, 144 KB, stored out of line), written
// under session settings unlike every pinned one and then updated and
// deleted, go through `kind: trigger` into a PostgreSQL target: every row
// is byte-identical there (record text and its md5, and the TOAST values
// compared in full).
func TestTriggerTypeZoo(t *testing.T) {
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	src.ExecT(t, "postgres", typezoo.DDL)
	dst.ExecT(t, "postgres", typezoo.DDL)
	r := startPipeline(t, triggerYAML(src, dst, t.TempDir(), ""))
	waitInstalled(t, src, 1)
	src.ExecT(t, "postgres", strings.Join(triggerZooWrites, ";\n"))
	waitDrained(t, r, src, 2*time.Minute)
	n1, h1 := zooTexts(t, src)
	n2, h2 := zooTexts(t, dst)
	require.Equal(t, n1, n2, "rows after the inserts")
	require.Equal(t, h1, h2, "rows after the inserts are byte-identical")

	src.ExecT(t, "postgres", strings.Join(triggerZooUpdates, ";\n"))
	waitDrained(t, r, src, 2*time.Minute)
	r.Stop(t)
	n1, h1 = zooTexts(t, src)
	n2, h2 = zooTexts(t, dst)
	require.Equal(t, n1, n2, "rows after the updates")
	require.Equal(t, h1, h2, "rows after the updates are byte-identical")
	for _, id := range []int{1, 20, 4} { // each row's text in full, for a readable failure
		var a, b string
		q := fmt.Sprintf(`SELECT z::text FROM zoo z WHERE id = %d`, id)
		require.NoError(t, src.QueryRow(q, &a))
		require.NoError(t, dst.QueryRow(q, &b))
		require.Equal(t, a, b, "row %d", id)
	}
	var bigLen, byLen int
	require.NoError(t, dst.QueryRow(`SELECT length(big), length(by) FROM zoo WHERE id = 4`, &bigLen, &byLen))
	require.Equal(t, 10000*33-1, bigLen, "the TOAST-sized text arrived whole")
	require.Equal(t, 9000*16, byLen, "the TOAST-sized bytea arrived whole")
	t.Logf("zoo: %d rows byte-identical (md5 %s); a %d-char text and a %d-byte bytea", n1, h1, bigLen, byLen)
}
