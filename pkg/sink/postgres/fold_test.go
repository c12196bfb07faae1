package postgres

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFoldedCommit: a batch beginning and ending its transaction commits in
// the round trip of its statements. A full-row update of a key the target
// lacks aborts that try — nothing of it is committed, the position
// included — and the batch is applied again with the missed key upserted;
// the fold then pauses. A Partial transaction's chunks are never folded.
func TestFoldedCommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	s := e.sink("fold")
	r := appRel()
	ctx := context.Background()
	position := func() uint64 {
		t.Helper()
		p, err := s.Position(ctx)
		require.NoError(t, err)
		return p.Seq
	}

	apply(t, s, 1, ins(r, "1", "a", "1"), ins(r, "2", "b", "2"))
	require.Zero(t, s.foldOff)
	require.NoError(t, s.Apply(ctx, batch(2, tx(upd(r, "1", "a2", "1")), tx(upd(r, "2", "b2", "2"), ins(r, "3", "c", "3")))))
	require.Zero(t, s.foldOff)
	require.Equal(t, 2, s.folded, "every key found: committed folded")
	require.Nil(t, s.tx)
	require.Equal(t, uint64(2), position())
	require.Equal(t, []string{"1|a2|1", "2|b2|2", "3|c|3"}, e.rows("SELECT * FROM app.t ORDER BY id"))

	e.exec(`DELETE FROM app.t WHERE id = 2`) // the target lost a row
	require.NoError(t, s.Apply(ctx, batch(3, tx(upd(r, "1", "a3", "1"), upd(r, "2", "b3", "2")), tx(ins(r, "4", "d", "4")))))
	require.Equal(t, foldPause, s.foldOff, "the miss pauses the fold")
	require.Equal(t, 2, s.folded)
	require.Nil(t, s.tx)
	require.Equal(t, uint64(3), position())
	require.Equal(t, []string{"1|a3|1", "2|b3|2", "3|c|3", "4|d|4"}, e.rows("SELECT * FROM app.t ORDER BY id"))
	require.Equal(t, []string{"1"}, e.rows("SELECT count(*) FROM cdcd.checkpoint WHERE name = 'fold'"))

	// The fold resumes after foldPause batches.
	s.foldOff = 1
	apply(t, s, 4, upd(r, "3", "c4", "3"))
	require.Zero(t, s.foldOff)
	require.Equal(t, 2, s.folded)
	apply(t, s, 5, upd(r, "3", "c5", "3"))
	require.Equal(t, 3, s.folded)
	require.Equal(t, uint64(5), position())

	// A large transaction in chunks: the final chunk commits what the
	// Partial ones began, in the usual way.
	part := batch(5, tx(upd(r, "4", "d6", "4")))
	part.Partial = true
	require.NoError(t, s.Apply(ctx, part))
	require.NotNil(t, s.tx)
	require.NoError(t, s.Apply(ctx, batch(6, tx(ins(r, "5", "e", "5")))))
	require.Nil(t, s.tx)
	require.Equal(t, 3, s.folded)
	require.Equal(t, uint64(6), position())
	require.Equal(t, []string{"3|c5|3", "4|d6|4", "5|e|5"}, e.rows("SELECT * FROM app.t WHERE id >= 3 ORDER BY id"))
}
