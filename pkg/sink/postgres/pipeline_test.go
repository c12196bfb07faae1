package postgres

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/typezoo"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

const mixDDL = appDDL + `;
CREATE TABLE app.u (id int PRIMARY KEY, v text, n int NOT NULL);
CREATE TABLE app.log (at int, what text)`

// TestPipelinedSegment: a batch of many small transactions over several
// tables is sent as one pipeline of statements; full-row updates of keys
// the target lacks are upserted after it, in a second one. (The batch is
// first tried in one round trip with its commit, which the missed key
// aborts: see TestFoldedCommit.)
func TestPipelinedSegment(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mixDDL)
	s := e.sink("pipe")
	r, u, l := appRel(), rel("app.u", "id pk", "v", "n"), rel("app.log", "at", "what")
	apply(t, s, 1, ins(r, "1", "a", "1"), ins(r, "2", "b", "2"), ins(r, "3", "c", "3"), ins(u, "1", "x", "1"))
	e.exec(`DELETE FROM app.u WHERE id = 1`) // the target lost a row

	var txs []sink.Tx
	for i := range 20 {
		n := strconv.Itoa(i)
		txs = append(txs, tx(
			upd(r, "1", "a"+n, n),             // full rows: the last wins
			upd(r, "2", unch, n),              // a partial update
			upd(u, "1", "x"+n, n),             // a full row of a missing key
			ins(l, n, "tx "+n),                // a keyless insert
			ins(r, strconv.Itoa(100+i), n, n), // fresh keys
		))
	}
	txs = append(txs, tx(del(r, "3"), del(r, "119")))
	st, pipes := s.statements, s.pipelines
	require.NoError(t, s.Apply(context.Background(), batch(2, txs...)))
	// app.t: delete, insert of the fresh keys, upsert's UPDATE, partial
	// update; app.u: upsert's UPDATE; app.log: insert — one pipeline; then
	// the upsert of app.u's missed key.
	require.Equal(t, foldPause, s.foldOff, "the folded try missed a key")
	require.Equal(t, 6+7, s.statements-st, "6 statements tried folded, then 7")
	require.Equal(t, 1+1, s.pipelines-pipes, "the upsert of the missed key alone is a plain statement")
	require.Equal(t, []string{"1|a19|19", "2|b|19"}, e.rows("SELECT * FROM app.t WHERE id < 100 ORDER BY id"))
	require.Equal(t, []string{"19|100|118"}, e.rows("SELECT count(*), min(id), max(id) FROM app.t WHERE id >= 100"))
	require.Equal(t, []string{"1|x19|19"}, e.rows("SELECT * FROM app.u"))
	require.Equal(t, []string{"20|190"}, e.rows("SELECT count(*), sum(at) FROM app.log"))
	p, err := s.Position(context.Background())
	require.NoError(t, err)
	require.Equal(t, pos(2), p)
}

// TestPipelineErrorNamesItsStatement: a statement failing inside a
// pipeline is named with its table and rows, and nothing of the batch is
// applied.
func TestPipelineErrorNamesItsStatement(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mixDDL)
	s := e.sink("pipe-err")
	r, u, l := appRel(), rel("app.u", "id pk", "v", "n"), rel("app.log", "at", "what")
	apply(t, s, 1, ins(r, "1", "a", "1"))
	err := s.Apply(context.Background(), batch(2,
		tx(upd(r, "1", "b", "2"), ins(l, "1", "x")),
		tx(ins(u, "1", "v", nil), ins(u, "2", "w", "2")), // NOT NULL violated
		tx(ins(l, "2", "y")),
	))
	require.ErrorContains(t, err, "upsert into app.u (2 rows)")
	require.ErrorContains(t, err, "23502")
	require.Equal(t, []string{"1|a|1"}, e.rows("SELECT * FROM app.t"))
	require.Equal(t, []string{"0"}, e.rows("SELECT count(*) FROM app.log"))
	// The sink is usable again once reopened, as after any error.
	s = e.sink("pipe-err")
	apply(t, s, 2, upd(r, "1", "c", "3"))
	require.Equal(t, []string{"1|c|3"}, e.rows("SELECT * FROM app.t"))
}

// TestUpdateProbesTheKeyIndex: an UPDATE from a batch's arrays is a nested
// loop over the key index, not a hash join over a sequential scan of the
// whole target (quadratic for a large transaction applied in chunks).
func TestUpdateProbesTheKeyIndex(t *testing.T) {
	t.Parallel()
	e := newEnv(t, benchDDL, `INSERT INTO app.bench SELECT g, 'n', g, now(), g FROM generate_series(1, 50000) g`, `ANALYZE app.bench`)
	s := e.sink("plan")
	ctx := context.Background()
	r := benchRel()
	tbl, err := s.table(ctx, s.conn, r)
	require.NoError(t, err)
	var rows []change.Row
	for i := range 10000 {
		rows = append(rows, benchInsert(r, i*5).New)
	}
	set := nonKeyColumns(tbl)
	args := arrays(arrays(nil, rows, tbl.keys), rows, set)
	for _, sql := range []string{updateSQL(tbl, set), deleteSQL(tbl)} {
		a := args
		if strings.HasPrefix(sql, "DELETE") {
			a = args[:len(tbl.keys)]
		}
		rs, err := s.conn.Query(ctx, "EXPLAIN "+sql, a...)
		require.NoError(t, err)
		lines, err := pgx.CollectRows(rs, pgx.RowTo[string])
		require.NoError(t, err)
		plan := strings.Join(lines, "\n")
		require.Contains(t, plan, "Nested Loop", plan)
		require.Contains(t, plan, "Index Scan using bench_pkey", plan)
		require.NotContains(t, plan, "Seq Scan on bench", plan)
	}
}

// TestTypeZooThroughApply: every type of the zoo arrives exactly through
// the apply statements: inserts (unnest and COPY), full-row updates from
// arrays, and a partial update leaving an unchanged TOAST value alone.
func TestTypeZooThroughApply(t *testing.T) {
	t.Parallel()
	src, def := zooSource(t)
	ctx := context.Background()
	srcConn, err := pgx.Connect(ctx, src.dsn)
	require.NoError(t, err)
	defer srcConn.Close(ctx)
	rel := &change.Relation{Schema: "public", Name: "zoo", PrimaryKey: []int{0}}
	for _, c := range def.Columns {
		rel.Columns = append(rel.Columns, change.Column{Name: c.Name, TypeMod: -1})
	}
	ids := []string{"1", "2", "3", "4"}
	read := func() map[string]change.Row {
		m := map[string]change.Row{}
		for _, id := range ids {
			m[id] = textRow(t, srcConn, id)
		}
		return m
	}
	for _, copyMin := range []int{0, 1} {
		t.Run("copyMinRows="+strconv.Itoa(copyMin), func(t *testing.T) {
			e := newEnv(t, typezoo.DDL)
			s := e.sink("zoo")
			s.copyMinRows = copyMin
			rows := read()
			var changes []*change.Change
			for _, id := range ids {
				changes = append(changes, &change.Change{Op: change.OpInsert, Relation: rel, New: rows[id]})
			}
			apply(t, s, 1, changes...)
			requireZooEqual(t, src, e)

			// Full rows after a change on the source, then a partial one.
			src.exec(`UPDATE zoo SET kind = kind || ' updated ` + strconv.Itoa(copyMin) + `'`)
			rows = read()
			changes = changes[:0]
			for _, id := range ids {
				changes = append(changes, &change.Change{Op: change.OpUpdate, Relation: rel, New: rows[id]})
			}
			apply(t, s, 2, changes...)
			requireZooEqual(t, src, e)

			src.exec(`UPDATE zoo SET kind = 'partial ` + strconv.Itoa(copyMin) + `' WHERE id = 4`)
			partial := read()["4"]
			big := len(partial) - 1
			require.Greater(t, len(partial[big].Data), 2000, "row 4's big value is TOAST-sized")
			partial[big] = change.Unchanged
			apply(t, s, 3, &change.Change{Op: change.OpUpdate, Relation: rel, New: partial})
			requireZooEqual(t, src, e)
		})
	}
}
