package trigger_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/source"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

// gotTx is one transaction as a source delivered it.
type gotTx struct {
	Tx      change.Tx // as of its Commit
	Changes []string  // op, table and row texts of each change
	Rels    []*change.Relation
}

// describe renders a change for comparisons.
func describe(c *change.Change) string {
	if c.Op == change.OpTruncate {
		var names []string
		for _, r := range c.Truncate.Relations {
			names = append(names, r.QualifiedName())
		}
		return "T " + strings.Join(names, ",")
	}
	return fmt.Sprintf("%s %s old=%v key=%v new=%v", c.Op, c.Relation.QualifiedName(), texts(c.Old), c.OldKeyOnly, texts(c.New))
}

// collect drives Next until n transactions have been delivered whole,
// checking the event protocol on the way: Begin, then Relations and
// Changes (each change's relation announced in this session before it,
// in the shape it uses), then Commit with the Begin's pointer.
func collect(t *testing.T, ctx context.Context, s source.Source, n int, announced map[uint32]*change.Relation) []gotTx {
	t.Helper()
	var out []gotTx
	var cur *gotTx
	var begin *change.Tx
	for len(out) < n {
		require.NoError(t, ctx.Err(), "waiting for %d transactions, got %d", n, len(out))
		ev, err := s.Next(ctx, time.Now().Add(100*time.Millisecond))
		require.NoError(t, err)
		switch ev.Kind {
		case source.None:
			require.Nil(t, cur, "None in the middle of a transaction")
		case source.Begin:
			require.Nil(t, cur, "Begin inside a transaction")
			begin = ev.Tx
			cur = &gotTx{}
		case source.Relation:
			require.NotNil(t, cur)
			announced[ev.Relation.OID] = ev.Relation
			cur.Rels = append(cur.Rels, ev.Relation)
		case source.Change:
			require.NotNil(t, cur)
			c := ev.Change
			rels := []*change.Relation{c.Relation}
			if c.Truncate != nil {
				rels = c.Truncate.Relations
			}
			for _, r := range rels {
				require.Same(t, r, announced[r.OID], "change of %s before its Relation", r.QualifiedName())
			}
			cur.Changes = append(cur.Changes, describe(c))
		case source.Commit:
			require.NotNil(t, cur)
			require.Same(t, begin, ev.Tx, "Commit carries the Begin's Tx")
			cur.Tx = *ev.Tx
			out = append(out, *cur)
			cur = nil
		}
	}
	return out
}

// quiet drives Next for a while and requires that nothing arrives.
func quiet(t *testing.T, ctx context.Context, s source.Source, polls int) {
	t.Helper()
	for range polls {
		ev, err := s.Next(ctx, time.Now().Add(250*time.Millisecond))
		require.NoError(t, err)
		require.Equal(t, source.None, ev.Kind, "unexpected event %+v", ev)
	}
}

func logRows(t *testing.T, c *pgtest.Cluster) int {
	t.Helper()
	var n int
	require.NoError(t, connect(t, c, "").QueryRow(testCtx(t), `SELECT count(*) FROM cdcd.change_log`).Scan(&n))
	return n
}

// openSource opens a trigger source on c's database postgres.
func openSource(t *testing.T, c *pgtest.Cluster, cfg trigger.Config) (source.Source, source.Identity) {
	t.Helper()
	cfg.DSN = c.DSN("postgres")
	cfg.PollInterval = 20 * time.Millisecond
	s, id, err := trigger.NewOpener(cfg)(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, id
}

// TestSourceStream: a workload of inserts, updates, deletes, a truncate
// and a column added, over several transactions and two tables, arrives
// whole, in commit order, at positions 2i+1/2i+2, each table announced
// with its primary key before its first change and again after its
// columns changed; Ack deletes what was delivered.
func TestSourceStream(t *testing.T) {
	c := pgtest.StartT(t, pgtest.Options{Name: "source"})
	c.ExecT(t, "postgres",
		`CREATE TABLE a (id int PRIMARY KEY, v text)`,
		`CREATE TABLE b (k text, n int, note text, PRIMARY KEY (n, k))`,
		`CREATE TABLE skipped (id int PRIMARY KEY)`)
	ctx := testCtx(t)
	dir := t.TempDir()
	cfg := trigger.Config{StateDir: dir, Create: true, Include: func(schema, table string) bool { return table != "skipped" }}
	s, id := openSource(t, c, cfg)
	require.Equal(t, "trigger", id.Kind)
	require.NotZero(t, id.SystemID)
	pos, err := s.Start(ctx, 0)
	require.NoError(t, err)
	require.Zero(t, pos)
	fi, err := os.Stat(filepath.Join(dir, trigger.StateFile))
	require.NoError(t, err, "the first position is stored at once")
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	quiet(t, ctx, s, 1)

	c.ExecT(t, "postgres", `INSERT INTO a VALUES (1, 'one'), (2, 'two')`)
	c.ExecT(t, "postgres", `BEGIN; UPDATE a SET v = 'uno' WHERE id = 1; INSERT INTO b VALUES ('x', 1, 'bx'); INSERT INTO skipped VALUES (1); COMMIT`)
	c.ExecT(t, "postgres", `BEGIN; DELETE FROM a WHERE id = 2; UPDATE b SET n = 2 WHERE n = 1; COMMIT`)
	c.ExecT(t, "postgres", `ALTER TABLE a ADD COLUMN w int`, `INSERT INTO a VALUES (3, 'three', 33)`)
	c.ExecT(t, "postgres", `TRUNCATE b`)

	announced := map[uint32]*change.Relation{}
	got := collect(t, ctx, s, 5, announced)
	want := [][]string{
		{"insert public.a old=[] key=false new=[1 one]", "insert public.a old=[] key=false new=[2 two]"},
		{"update public.a old=[] key=false new=[1 uno]", "insert public.b old=[] key=false new=[x 1 bx]"},
		{"delete public.a old=[2 <absent>] key=true new=[]", "update public.b old=[x 1 <absent>] key=true new=[x 2 bx]"},
		{"insert public.a old=[] key=false new=[3 three 33]"},
		{"T public.b"},
	}
	var xids []uint32
	for i, g := range got {
		require.Equal(t, want[i], g.Changes, "transaction %d", i)
		require.Equal(t, change.LSN(2*i+1), g.Tx.FinalLSN)
		require.Equal(t, change.LSN(2*i+1), g.Tx.CommitLSN)
		require.Equal(t, change.LSN(2*i+2), g.Tx.EndLSN)
		require.False(t, g.Tx.CommitTime.IsZero())
		xids = append(xids, g.Tx.XID)
	}
	require.IsIncreasing(t, xids, "sequential transactions arrive in commit order")
	// Relations: a and b before their first change, a again after ADD COLUMN.
	require.Len(t, got[0].Rels, 1)
	ra := got[0].Rels[0]
	require.Equal(t, "public.a", ra.QualifiedName())
	require.Equal(t, []int{0}, ra.PrimaryKey)
	require.Len(t, got[1].Rels, 1)
	rb := got[1].Rels[0]
	require.Equal(t, "public.b", rb.QualifiedName())
	require.Equal(t, []int{1, 0}, rb.PrimaryKey, "key order n, k")
	require.Empty(t, got[2].Rels)
	require.Len(t, got[3].Rels, 1)
	require.Equal(t, []string{"id", "v", "w"}, []string{got[3].Rels[0].Columns[0].Name, got[3].Rels[0].Columns[1].Name, got[3].Rels[0].Columns[2].Name})
	require.Equal(t, []int{0}, got[3].Rels[0].PrimaryKey)
	require.Empty(t, got[4].Rels)

	// The batch is delivered (one poll read it all: Next was not called
	// during the workload); acknowledging it empties the log.
	require.Equal(t, 8, logRows(t, c))
	_, err = s.Ack(ctx, got[len(got)-1].Tx.EndLSN, true)
	require.NoError(t, err)
	require.Zero(t, logRows(t, c))
	quiet(t, ctx, s, 1)

	// A new session announces the relations again and continues the positions.
	require.NoError(t, s.Close())
	cfg.Create = false
	s2, id2 := openSource(t, c, cfg)
	require.Equal(t, id, id2, "the identity is stable")
	_, err = s2.Start(ctx, 10)
	require.NoError(t, err)
	c.ExecT(t, "postgres", `INSERT INTO a VALUES (4, 'four', 44)`)
	got = collect(t, ctx, s2, 1, map[uint32]*change.Relation{})
	require.Equal(t, change.LSN(11), got[0].Tx.FinalLSN)
	require.Equal(t, change.LSN(12), got[0].Tx.EndLSN)
	require.Len(t, got[0].Rels, 1)
	adopt, err := s2.Ack(ctx, 12, true)
	require.NoError(t, err)
	require.Zero(t, adopt, "a trigger source never adopts")
	require.Zero(t, logRows(t, c))
}

// TestSourcePartitions: with every user table included, a write through a
// partitioned table arrives under its name and a write straight into a
// partition under the partition's, each once.
func TestSourcePartitions(t *testing.T) {
	c := pgtest.StartT(t, pgtest.Options{Name: "source"})
	c.ExecT(t, "postgres",
		`CREATE TABLE p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id)`,
		`CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100)`)
	ctx := testCtx(t)
	s, _ := openSource(t, c, trigger.Config{StateDir: t.TempDir(), Create: true})
	_, err := s.Start(ctx, 0)
	require.NoError(t, err)
	c.ExecT(t, "postgres", `INSERT INTO p VALUES (1, 'via parent')`, `INSERT INTO p1 VALUES (2, 'direct')`,
		`UPDATE p SET v = 'upd' WHERE id = 2`, `DELETE FROM p1 WHERE id = 1`)
	got := collect(t, ctx, s, 4, map[uint32]*change.Relation{})
	var all []string
	for _, g := range got {
		all = append(all, g.Changes...)
	}
	require.Equal(t, []string{
		"insert public.p old=[] key=false new=[1 via parent]",
		"insert public.p1 old=[] key=false new=[2 direct]",
		"update public.p old=[] key=false new=[2 upd]",
		"delete public.p1 old=[1 <absent>] key=true new=[]",
	}, all)
}

// TestSourceFirstStartReadsWhatTheLogHolds: changes captured between
// install and cdcd's first start (the window in which the target is
// loaded) are delivered, including a transaction that was still running
// when the source started; nothing is lost to a "now" position.
func TestSourceFirstStartReadsWhatTheLogHolds(t *testing.T) {
	c := pgtest.StartT(t, pgtest.Options{Name: "source"})
	c.ExecT(t, "postgres", `CREATE TABLE a (id int PRIMARY KEY, v text)`)
	ctx := testCtx(t)
	conn := connect(t, c, "")
	tables, err := trigger.Tables(ctx, conn, nil)
	require.NoError(t, err)
	require.NoError(t, trigger.Install(ctx, conn, tables, trigger.Options{}))
	c.ExecT(t, "postgres", `INSERT INTO a VALUES (1, 'before start')`, `UPDATE a SET v = 'updated before start' WHERE id = 1`)
	running := connect(t, c, "")
	tx, err := running.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO a VALUES (2, 'running at start')`)
	require.NoError(t, err)

	s, _ := openSource(t, c, trigger.Config{StateDir: t.TempDir()})
	_, err = s.Start(ctx, 0)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	got := collect(t, ctx, s, 3, map[uint32]*change.Relation{})
	var changes []string
	for _, g := range got {
		changes = append(changes, g.Changes...)
	}
	require.Equal(t, []string{
		`insert public.a old=[] key=false new=[1 before start]`,
		`update public.a old=[] key=false new=[1 updated before start]`,
		`insert public.a old=[] key=false new=[2 running at start]`,
	}, changes)
}

// TestSourceReadsInPages: with ReadRows 7, a 50-row transaction is read in
// pages of 7 and small transactions in groups of at most 7 rows, and the
// source delivers exactly what one Poll of the whole batch reads, in the
// same order.
func TestSourceReadsInPages(t *testing.T) {
	c := pgtest.StartT(t, pgtest.Options{Name: "source"})
	c.ExecT(t, "postgres", `CREATE TABLE a (id int PRIMARY KEY, v text)`)
	ctx := testCtx(t)
	s, _ := openSource(t, c, trigger.Config{StateDir: t.TempDir(), Create: true, ReadRows: 7})
	_, err := s.Start(ctx, 0)
	require.NoError(t, err)
	conn := connect(t, c, "")
	pos, err := trigger.Earliest(ctx, conn)
	require.NoError(t, err)

	c.ExecT(t, "postgres", `INSERT INTO a SELECT g, 'big' FROM generate_series(1, 50) g`)
	for i := range 10 {
		c.ExecT(t, "postgres", fmt.Sprintf(`BEGIN; INSERT INTO a VALUES (%d, 'small'); UPDATE a SET v = 'touched' WHERE id = %d; DELETE FROM a WHERE id = %d; COMMIT`,
			100+i, 1+i, 40+i))
	}
	c.ExecT(t, "postgres", `UPDATE a SET v = 'all' WHERE id <= 30`)

	full, err := trigger.NewReader().Poll(ctx, conn, pos)
	require.NoError(t, err)
	require.Len(t, full.Txs, 12)
	require.Equal(t, 50+10*3+30, full.Rows)
	var want [][]string
	for _, tx := range full.Txs {
		var d []string
		for i := range tx.Changes {
			d = append(d, describe(&tx.Changes[i]))
		}
		want = append(want, d)
	}
	got := collect(t, ctx, s, 12, map[uint32]*change.Relation{})
	for i, g := range got {
		require.Equal(t, want[i], g.Changes, "transaction %d", i)
		require.Equal(t, uint32(full.Txs[i].XID), g.Tx.XID)
	}
}
