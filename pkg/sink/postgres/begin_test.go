package postgres

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBeginFolded: a batch's transaction is begun by the round trip of its
// first statements (or of its commit when it has none), not by one of its
// own, and is still one transaction with asynchronous commit: every row of
// the batch records the same transaction id and synchronous_commit = off.
// Statements that cannot share a pipeline begin it first.
func TestBeginFolded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `CREATE SCHEMA app;
CREATE TABLE app.t (id int PRIMARY KEY, v text,
	sc text DEFAULT current_setting('synchronous_commit'), x xid8 DEFAULT pg_current_xact_id())`)
	s := e.sink("begin")
	require.True(t, s.async)
	r := rel("app.t", "id pk", "v")
	ctx := context.Background()

	// The first batch looks the table up, in the transaction: a BEGIN of
	// its own.
	apply(t, s, 1, ins(r, "1", "a"))
	require.Equal(t, 1, s.begins)
	s.begins = 0
	// A pipeline of several statements.
	require.NoError(t, s.Apply(ctx, batch(2, tx(ins(r, "2", "b")), tx(upd(r, "1", "a2"), del(r, "2")), tx(ins(r, "3", "c")))))
	require.Zero(t, s.begins)
	require.Equal(t, []string{"1|a2|off", "3|c|off"}, e.rows("SELECT id, v, sc FROM app.t ORDER BY id"))
	require.Equal(t, []string{"1"}, e.rows("SELECT count(DISTINCT x) FROM app.t WHERE id = 3"))
	// No statement at all: the commit begins the transaction.
	require.NoError(t, s.Apply(ctx, batch(3, tx(heartbeat()))))
	require.Zero(t, s.begins)
	p, err := s.Position(ctx)
	require.NoError(t, err)
	require.Equal(t, pos(3), p)
	// A TRUNCATE first: a BEGIN of its own, then the rest in the same
	// transaction.
	require.NoError(t, s.Apply(ctx, batch(4, tx(trunc(false, false, r)), tx(ins(r, "4", "d"), ins(r, "5", "e")))))
	require.Equal(t, 1, s.begins)
	require.Equal(t, []string{"4|d|off", "5|e|off"}, e.rows("SELECT id, v, sc FROM app.t ORDER BY id"))
	require.Equal(t, []string{"1"}, e.rows("SELECT count(DISTINCT x) FROM app.t"))
	p, err = s.Position(ctx)
	require.NoError(t, err)
	require.Equal(t, pos(4), p)
	// A failing first pipeline rolls back and leaves the sink usable.
	err = s.Apply(ctx, batch(5, tx(ins(r, "6", "f")), tx(ins(r, "6", "g"), ins(r, "7", "h"))))
	require.NoError(t, err, "the same key twice collapses to one upsert")
	e.exec(`ALTER TABLE app.t ADD CHECK (v <> 'bad')`)
	err = s.Apply(ctx, batch(6, tx(ins(r, "8", "bad")), tx(upd(r, "4", "d2"))))
	require.ErrorContains(t, err, "23514")
	require.NoError(t, s.Apply(ctx, batch(6, tx(ins(r, "8", "ok")))))
	require.Equal(t, []string{"4|d", "5|e", "6|g", "7|h", "8|ok"}, e.rows("SELECT id, v FROM app.t ORDER BY id"))
	require.Equal(t, 1, s.begins, "only the TRUNCATE's")
}
