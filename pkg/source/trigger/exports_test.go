package trigger_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

// TestExportsPlaceBoundary: a snapshot exported through Exports sees
// exactly the transactions the stream delivers at or before its position:
// three committed ones, not the one still open when it was exported, which
// the stream delivers after it. With no source polling, Export gives up
// when its context ends and says why.
func TestExportsPlaceBoundary(t *testing.T) {
	c := pgtest.StartT(t, pgtest.Options{Name: "source"})
	c.ExecT(t, "postgres", `CREATE TABLE a (id int PRIMARY KEY)`)
	ctx := testCtx(t)
	ex := trigger.NewExports()

	idle, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := ex.Export(idle)
	cancel()
	require.ErrorContains(t, err, "is capture running?")

	s, _ := openSource(t, c, trigger.Config{StateDir: t.TempDir(), Create: true, Exports: ex})
	_, err = s.Start(ctx, 0)
	require.NoError(t, err)
	for _, id := range []string{"1", "2", "3"} {
		c.ExecT(t, "postgres", `INSERT INTO a VALUES (`+id+`)`)
	}
	open := connect(t, c, "")
	tx, err := open.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO a VALUES (4)`)
	require.NoError(t, err)

	type result struct {
		exp *trigger.Exported
		err error
	}
	done := make(chan result, 1)
	go func() {
		exp, err := ex.Export(ctx)
		done <- result{exp, err}
	}()
	// Drive the source: the request is served by a poll, before or
	// after the one that reads the three transactions.
	announced := map[uint32]*change.Relation{}
	got := collect(t, ctx, s, 3, announced)
	_, err = s.Ack(ctx, got[2].Tx.EndLSN, true) // the next poll follows only an Ack
	require.NoError(t, err)
	var res result
	for res.exp == nil && res.err == nil {
		select {
		case res = <-done:
		default:
			quiet(t, ctx, s, 1)
		}
	}
	require.NoError(t, res.err)
	defer res.exp.Close(context.Background())
	require.Equal(t, got[2].Tx.EndLSN, res.exp.LSN, "the boundary is after the third transaction")

	imp := connect(t, c, "")
	var rows int
	require.NoError(t, pgx.BeginTxFunc(ctx, imp, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(itx pgx.Tx) error {
		if _, err := itx.Exec(ctx, `SET TRANSACTION SNAPSHOT '`+res.exp.Name+`'`); err != nil {
			return err
		}
		return itx.QueryRow(ctx, `SELECT count(*) FROM a`).Scan(&rows)
	}))
	require.Equal(t, 3, rows, "the snapshot holds the transactions up to the boundary, not the open one")

	require.NoError(t, tx.Commit(ctx))
	last := collect(t, ctx, s, 1, announced)
	require.Greater(t, last[0].Tx.EndLSN, res.exp.LSN, "the open transaction is streamed after the boundary")
}
