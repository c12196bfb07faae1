package trigger_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/source"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

// sameTxs requires that two deliveries of transactions are identical but
// for the commit time (the time of the poll that read them).
func sameTxs(t *testing.T, want, got []gotTx) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		w, g := want[i], got[i]
		w.Tx.CommitTime, g.Tx.CommitTime = time.Time{}, time.Time{}
		require.Equal(t, w.Tx, g.Tx, "transaction %d", i)
		require.Equal(t, w.Changes, g.Changes, "transaction %d", i)
	}
}

// restart opens a new session and starts it at held.
func restart(t *testing.T, c *pgtest.Cluster, dir string, held change.LSN) source.Source {
	t.Helper()
	s, _ := openSource(t, c, trigger.Config{StateDir: dir})
	_, err := s.Start(testCtx(t), held)
	require.NoError(t, err)
	return s
}

// TestSourceCrash: a session that stops ("crashes") after delivering a
// batch, with the trail holding none, some or all of its transactions,
// is resumed by the next one exactly after what the trail holds, with
// identical content; a crash between storing the state and deleting the
// rows re-delivers nothing; a trail behind what the source deleted, or
// at a position the source never produced, is refused.
func TestSourceCrash(t *testing.T) {
	c := pgtest.StartT(t, pgtest.Options{Name: "source"})
	c.ExecT(t, "postgres", `CREATE TABLE a (id int PRIMARY KEY, v text)`)
	ctx := testCtx(t)
	dir := t.TempDir()
	s, _ := openSource(t, c, trigger.Config{StateDir: dir, Create: true})
	_, err := s.Start(ctx, 0)
	require.NoError(t, err)
	for i := 1; i <= 5; i++ {
		c.ExecT(t, "postgres", `BEGIN`+
			`; INSERT INTO a VALUES (`+string(rune('0'+i))+`, 'new')`+
			`; UPDATE a SET v = 'upd' WHERE id = `+string(rune('0'+i))+
			`; COMMIT`)
	}
	all := collect(t, ctx, s, 5, map[uint32]*change.Relation{})
	require.NoError(t, s.Close()) // crash: the trail holds nothing yet

	t.Run("trail holds none", func(t *testing.T) {
		s := restart(t, c, dir, 0)
		sameTxs(t, all, collect(t, ctx, s, 5, map[uint32]*change.Relation{}))
		quiet(t, ctx, s, 1)
		require.NoError(t, s.Close())
	})
	t.Run("trail holds 2 of 5", func(t *testing.T) {
		s := restart(t, c, dir, all[1].Tx.EndLSN)
		sameTxs(t, all[2:], collect(t, ctx, s, 3, map[uint32]*change.Relation{}))
		quiet(t, ctx, s, 1)
		require.NoError(t, s.Close())
	})
	t.Run("odd position", func(t *testing.T) {
		s, _ := openSource(t, c, trigger.Config{StateDir: dir})
		_, err := s.Start(ctx, all[1].Tx.EndLSN+1)
		require.ErrorContains(t, err, "not a transaction end")
		require.True(t, trigger.IsTerminal(err))
	})
	t.Run("position past the batch", func(t *testing.T) {
		s, _ := openSource(t, c, trigger.Config{StateDir: dir})
		_, err := s.Start(ctx, all[4].Tx.EndLSN+2)
		require.ErrorContains(t, err, "the change log has 5")
		require.True(t, trigger.IsTerminal(err))
	})
	t.Run("trail holds all", func(t *testing.T) {
		require.Equal(t, 10, logRows(t, c))
		s := restart(t, c, dir, all[4].Tx.EndLSN)
		require.Zero(t, logRows(t, c), "Start finds the batch durable and deletes it")
		quiet(t, ctx, s, 1)
		require.NoError(t, s.Close())
	})

	// A batch whose state moved past it, but whose rows were not deleted:
	// a trigger makes the DELETE fail.
	c.ExecT(t, "postgres", `INSERT INTO a VALUES (6, 'six')`, `INSERT INTO a VALUES (7, 'seven')`)
	s = restart(t, c, dir, 10)
	two := collect(t, ctx, s, 2, map[uint32]*change.Relation{})
	require.Equal(t, change.LSN(14), two[1].Tx.EndLSN)
	c.ExecT(t, "postgres",
		`CREATE FUNCTION no_delete() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'no delete'; END$$`,
		`CREATE TRIGGER no_delete BEFORE DELETE ON cdcd.change_log FOR EACH ROW EXECUTE FUNCTION no_delete()`)
	_, err = s.Ack(ctx, 14, true)
	require.ErrorContains(t, err, "no delete")
	require.False(t, trigger.IsTerminal(err), "retriable: %v", err)
	require.NoError(t, s.Close())
	c.ExecT(t, "postgres", `DROP TRIGGER no_delete ON cdcd.change_log`)
	require.Equal(t, 2, logRows(t, c), "rows stay until deleted")

	t.Run("state stored, rows not deleted", func(t *testing.T) {
		s := restart(t, c, dir, 14)
		require.Zero(t, logRows(t, c), "Start deletes them")
		quiet(t, ctx, s, 2) // and nothing is re-delivered
		require.NoError(t, s.Close())
	})
	t.Run("trail behind the source", func(t *testing.T) {
		s, _ := openSource(t, c, trigger.Config{StateDir: dir})
		_, err := s.Start(ctx, 4)
		require.ErrorIs(t, err, source.ErrAhead)
		require.True(t, trigger.IsTerminal(err))
		t.Log(err)
	})
	t.Run("trail past the source", func(t *testing.T) {
		s, _ := openSource(t, c, trigger.Config{StateDir: dir})
		_, err := s.Start(ctx, 16)
		require.ErrorContains(t, err, "past the source's last position")
		require.True(t, trigger.IsTerminal(err))
	})
	t.Run("state file lost", func(t *testing.T) {
		s, _ := openSource(t, c, trigger.Config{StateDir: t.TempDir()})
		_, err := s.Start(ctx, 14)
		require.ErrorContains(t, err, "is missing")
		require.True(t, trigger.IsTerminal(err))
	})
	t.Run("state file corrupt", func(t *testing.T) {
		d := t.TempDir()
		b, err := os.ReadFile(filepath.Join(dir, trigger.StateFile))
		require.NoError(t, err)
		b[len(b)/2] ^= 1
		require.NoError(t, os.WriteFile(filepath.Join(d, trigger.StateFile), b, 0o600))
		s, _ := openSource(t, c, trigger.Config{StateDir: d})
		_, err = s.Start(ctx, 14)
		require.ErrorContains(t, err, "is corrupt")
		require.True(t, trigger.IsTerminal(err))
	})
	t.Run("another change log", func(t *testing.T) {
		conn := connect(t, c, "")
		require.NoError(t, trigger.Uninstall(ctx, conn))
		s, _ := openSource(t, c, trigger.Config{StateDir: dir, Create: true})
		_, err := s.Start(ctx, 14)
		require.ErrorContains(t, err, "belongs to change log")
		require.True(t, trigger.IsTerminal(err))
	})
}

// TestSourceAckDurableOnly: Ack deletes the rows of a batch only once the
// trail holds all of it, and never rows of transactions read later.
func TestSourceAckDurableOnly(t *testing.T) {
	c := pgtest.StartT(t, pgtest.Options{Name: "source"})
	c.ExecT(t, "postgres", `CREATE TABLE a (id int PRIMARY KEY, v text)`)
	ctx := testCtx(t)
	s, _ := openSource(t, c, trigger.Config{StateDir: t.TempDir(), Create: true})
	_, err := s.Start(ctx, 0)
	require.NoError(t, err)
	c.ExecT(t, "postgres", `INSERT INTO a VALUES (1, 'a')`, `INSERT INTO a VALUES (2, 'b')`, `INSERT INTO a VALUES (3, 'c')`)
	announced := map[uint32]*change.Relation{}
	got := collect(t, ctx, s, 3, announced)
	require.Equal(t, change.LSN(6), got[2].Tx.EndLSN)
	c.ExecT(t, "postgres", `INSERT INTO a VALUES (4, 'late')`) // after the poll
	for _, pos := range []change.LSN{0, 2, 4, 5} {
		adopt, err := s.Ack(ctx, pos, false)
		require.NoError(t, err)
		require.Zero(t, adopt)
		require.Equal(t, 4, logRows(t, c), "after Ack(%d) the batch is not durable yet", pos)
	}
	quiet(t, ctx, s, 1) // the next batch waits for the Ack
	_, err = s.Ack(ctx, 6, false)
	require.NoError(t, err)
	require.Equal(t, 1, logRows(t, c), "the late transaction's row stays")
	late := collect(t, ctx, s, 1, announced)
	require.Equal(t, change.LSN(7), late[0].Tx.FinalLSN)
	require.Equal(t, []string{"insert public.a old=[] key=false new=[4 late]"}, late[0].Changes)
	_, err = s.Ack(ctx, 8, true)
	require.NoError(t, err)
	require.Zero(t, logRows(t, c))
}

// TestSourceNotInstalled: a missing change log or missing triggers are one
// clear, terminal error naming the object and the remedy, at open without
// Create and while streaming when the log is dropped by hand.
func TestSourceNotInstalled(t *testing.T) {
	c := pgtest.StartT(t, pgtest.Options{Name: "source"})
	c.ExecT(t, "postgres", `CREATE TABLE a (id int PRIMARY KEY, v text)`)
	ctx := testCtx(t)
	dir := t.TempDir()
	open := trigger.NewOpener(trigger.Config{DSN: c.DSN("postgres"), StateDir: dir})

	_, _, err := open(ctx)
	require.ErrorIs(t, err, trigger.ErrNotInstalled)
	require.True(t, trigger.IsTerminal(err))
	require.ErrorContains(t, err, "cdcd.change_log")
	require.ErrorContains(t, err, `triggers on "public"."a"`)
	require.ErrorContains(t, err, "`cdcd trigger install --config <file>`")
	t.Log(err)

	s, _ := openSource(t, c, trigger.Config{StateDir: dir, Create: true})
	_, err = s.Start(ctx, 0)
	require.NoError(t, err)
	c.ExecT(t, "postgres", `CREATE TABLE b (id int PRIMARY KEY)`)
	_, _, err = open(ctx)
	require.ErrorIs(t, err, trigger.ErrNotInstalled)
	require.ErrorContains(t, err, `missing triggers on "public"."b" (0 of 4)`)
	require.NotContains(t, err.Error(), "change_log")
	t.Log(err)

	c.ExecT(t, "postgres", `DROP TABLE cdcd.change_log`)
	var ev source.Event
	require.Eventually(t, func() bool {
		ev, err = s.Next(ctx, time.Now().Add(50*time.Millisecond))
		return err != nil || ev.Kind != source.None
	}, time.Minute, time.Millisecond)
	require.ErrorIs(t, err, trigger.ErrNotInstalled)
	require.True(t, trigger.IsTerminal(err))
	require.True(t, source.IsTerminal(err), "capture recognises it through the seam")
	require.ErrorContains(t, err, "cdcd.change_log is missing")
	require.ErrorContains(t, err, "`cdcd trigger install --config <file>`")
	t.Log(err)
}
