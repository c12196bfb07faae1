package postgres

import (
	"context"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// Run with:
//
//	go test ./pkg/sink/postgres -run '^$' -bench . -benchmem -benchtime 20x
//
// Each iteration applies (and commits) one batch of benchRows changes to a
// five-column table; rows/s is the figure to compare.

const benchRows = 10000

const benchDDL = `CREATE SCHEMA app;
CREATE TABLE app.bench (id bigint PRIMARY KEY, name text, qty int, at timestamptz, price numeric(12,2))`

func benchRel() *change.Relation { return rel("app.bench", "id pk", "name", "qty", "at", "price") }

func benchInsert(r *change.Relation, id int) *change.Change {
	s := strconv.Itoa(id)
	return ins(r, s, "name-"+s+" with some text", s, "2024-05-06 07:08:09.123456+00", s+".25")
}

// benchBatch returns benchRows changes made by mk for ids first, first+1, ….
func benchBatch(first int, mk func(id int) *change.Change) []*change.Change {
	return benchBatchN(first, benchRows, mk)
}

func benchBatchN(first, n int, mk func(id int) *change.Change) []*change.Change {
	changes := make([]*change.Change, n)
	for i := range changes {
		changes[i] = mk(first + i)
	}
	return changes
}

func benchSink(b *testing.B, copyMinRows int) (*env, *Sink) {
	e := newEnv(b, benchDDL)
	s := e.sink("bench")
	s.copyMinRows = copyMinRows
	return e, s
}

func reportRows(b *testing.B) {
	b.ReportMetric(float64(b.N*benchRows)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkApplyInsert(b *testing.B) {
	for _, mode := range []struct {
		name    string
		copyMin int
	}{{"unnest", 0}, {"copy", 1}} {
		b.Run(mode.name, func(b *testing.B) {
			_, s := benchSink(b, mode.copyMin)
			r := benchRel()
			ctx := context.Background()
			next := 0
			for b.Loop() {
				b.StopTimer()
				changes := benchBatch(next, func(id int) *change.Change { return benchInsert(r, id) })
				next += benchRows
				b.StartTimer()
				require.NoError(b, s.Apply(ctx, batch(uint64(next), tx(changes...))))
			}
			reportRows(b)
		})
	}
}

func BenchmarkApplyUpdate(b *testing.B) {
	for _, mode := range []struct {
		name    string
		copyMin int
		partial bool
	}{{"full-unnest", 0, false}, {"full-copy", 1, false}, {"partial", 0, true}} {
		b.Run(mode.name, func(b *testing.B) {
			_, s := benchSink(b, mode.copyMin)
			r := benchRel()
			ctx := context.Background()
			apply(b, s, 1, benchBatch(0, func(id int) *change.Change { return benchInsert(r, id) })...)
			round := 0
			for b.Loop() {
				b.StopTimer()
				round++
				q := strconv.Itoa(round)
				changes := benchBatch(0, func(id int) *change.Change {
					s := strconv.Itoa(id)
					if mode.partial {
						return upd(r, s, unch, q, unch, unch)
					}
					return upd(r, s, "name-"+s+" updated", q, "2024-05-06 07:08:09.123456+00", s+".50")
				})
				b.StartTimer()
				require.NoError(b, s.Apply(ctx, batch(uint64(round+1), tx(changes...))))
			}
			reportRows(b)
		})
	}
}

func BenchmarkApplyDelete(b *testing.B) {
	_, s := benchSink(b, 0)
	r := benchRel()
	ctx := context.Background()
	seq := uint64(0)
	for b.Loop() {
		b.StopTimer()
		seq++
		apply(b, s, seq, benchBatch(0, func(id int) *change.Change { return benchInsert(r, id) })...)
		changes := benchBatch(0, func(id int) *change.Change { return del(r, strconv.Itoa(id)) })
		seq++
		b.StartTimer()
		require.NoError(b, s.Apply(ctx, batch(seq, tx(changes...))))
	}
	reportRows(b)
}

// BenchmarkApplyInsertSize finds where COPY starts to beat unnest.
func BenchmarkApplyInsertSize(b *testing.B) {
	for _, n := range []int{10, 100, 300, 1000, 3000} {
		for _, mode := range []struct {
			name    string
			copyMin int
		}{{"unnest", 0}, {"copy", 1}} {
			b.Run(strconv.Itoa(n)+"/"+mode.name, func(b *testing.B) {
				_, s := benchSink(b, mode.copyMin)
				r := benchRel()
				ctx := context.Background()
				next := 0
				for b.Loop() {
					b.StopTimer()
					changes := benchBatchN(next, n, func(id int) *change.Change { return benchInsert(r, id) })
					next += n
					b.StartTimer()
					require.NoError(b, s.Apply(ctx, batch(uint64(next), tx(changes...))))
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}

// BenchmarkEncodeTextColumn: what pgx spends encoding one column of a
// 10,000-row batch as a text[] argument.
func BenchmarkEncodeTextColumn(b *testing.B) {
	r := benchRel()
	rows := make([]change.Row, benchRows)
	for i := range rows {
		rows[i] = benchInsert(r, i).New
	}
	rows[7][1] = change.Null
	m := pgtype.NewMap()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		buf, err = m.Encode(pgtype.TextArrayOID, pgtype.BinaryFormatCode, textColumn{rows: rows, col: 1}, buf[:0])
		require.NoError(b, err)
	}
}

// BenchmarkApplySmallTx: one small transaction per batch (a full-row
// update of an existing key and an insert, like a pgbench TPC-B
// transaction), as apply sends them when it keeps up with a live source:
// the cost per batch is mostly round trips (begin.go, fold.go).
func BenchmarkApplySmallTx(b *testing.B) {
	_, s := benchSink(b, 0)
	r := benchRel()
	ctx := context.Background()
	apply(b, s, 1, benchBatchN(0, 100, func(id int) *change.Change { return benchInsert(r, id) })...)
	round := 0
	for b.Loop() {
		round++
		q, k := strconv.Itoa(round), strconv.Itoa(round%100)
		require.NoError(b, s.Apply(ctx, batch(uint64(round+1), tx(
			upd(r, k, "name-"+k+" updated", q, "2024-05-06 07:08:09.123456+00", k+".50"),
			benchInsert(r, 100+round),
		))))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "batches/s")
}
