package oracle

import (
	"context"
	"database/sql/driver"
	"reflect"
	"strconv"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// lenArg matches an array bind of n elements.
type lenArg int

func (n lenArg) Match(v driver.Value) bool {
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Slice && rv.Len() == int(n)
}

// mixedBatch is a 10,000-row batch on orders: 5,000 inserts, 2,500 full
// updates, 1,500 deletes and 1,000 updates with the TOASTed note unchanged,
// in 100-row transactions.
func mixedBatch() []*change.Change {
	rel := ordersRel()
	var cs []*change.Change
	for i := range 10_000 {
		id := strconv.Itoa(i)
		switch {
		case i < 5000:
			cs = append(cs, ins(rel, id, "customer "+id, strconv.Itoa(i)+".25", "note "+id))
		case i < 7500:
			cs = append(cs, upd(rel, id, "customer "+id, "1.50", "new note"))
		case i < 9000:
			cs = append(cs, del(rel, id))
		default:
			cs = append(cs, upd(rel, id, "customer "+id, "2.00", "<unchanged>"))
		}
	}
	return cs
}

// TestStatementsPerBatch is the round-trip figure: a 10,000-row mixed
// batch on one table is 4 array executions (DELETE, INSERT, UPDATE of full
// rows, UPDATE without the unchanged TOAST column), the checkpoint MERGE and
// COMMIT: 6 round trips, whatever the row count.
func TestStatementsPerBatch(t *testing.T) {
	s, mock := mockSink(t, Config{})
	cs := mixedBatch()
	b := batch(1)
	b.Txs = nil
	for i := 0; i < len(cs); i += 100 {
		b.Txs = append(b.Txs, batch(1, cs[i:i+100]...).Txs...)
	}
	mock.ExpectBegin()
	expectOrdersCatalog(mock)
	mock.ExpectExec(ordersDelete).WithArgs(lenArg(1500)).WillReturnResult(sqlmock.NewResult(0, 1500))
	mock.ExpectExec(ordersInsert).WithArgs(lenArg(5000), lenArg(5000), lenArg(5000), lenArg(5000)).WillReturnResult(sqlmock.NewResult(0, 5000))
	mock.ExpectExec(ordersUpdate).WithArgs(lenArg(2500), lenArg(2500), lenArg(2500), lenArg(2500)).WillReturnResult(sqlmock.NewResult(0, 2500))
	mock.ExpectExec(`UPDATE "ORDERS" SET "CUSTOMER" = :1, "AMOUNT" = :2 WHERE "ID" = :3`).WithArgs(lenArg(1000), lenArg(1000), lenArg(1000)).
		WillReturnResult(sqlmock.NewResult(0, 1000))
	mock.ExpectExec(ckMerge()).WithArgs("ora", int64(1), change.LSN(1<<8).String()).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()
	require.NoError(t, s.Apply(context.Background(), b))
	require.NoError(t, mock.ExpectationsWereMet())
	require.Equal(t, 6, s.Statements())
	t.Logf("10,000-row mixed batch (5000 insert, 2500 update, 1500 delete, 1000 TOAST-unchanged update): %d round trips", s.Statements())
}

// BenchmarkBinds is the CPU cost per row of building the array binds for
// the mixed batch (plan, catalog cached, conversion of every value).
func BenchmarkBinds(b *testing.B) {
	rel := ordersRel()
	cols := map[string]targetColumn{
		"ID": {Name: "ID", DataType: "NUMBER", Precision: 19, Scale: 0}, "CUSTOMER": {Name: "CUSTOMER", DataType: "VARCHAR2", Precision: -1, Scale: -1},
		"AMOUNT": {Name: "AMOUNT", DataType: "NUMBER", Precision: 12, Scale: 2}, "NOTE": {Name: "NOTE", DataType: "CLOB", Precision: -1, Scale: -1},
	}
	s := &Sink{cfg: Config{}.withDefaults(), tables: map[*change.Relation]*table{}}
	s.types = pgtype.NewMap()
	t, err := newTable(s.cfg, `"ORDERS"`, rel, cols)
	if err != nil {
		b.Fatal(err)
	}
	cs := mixedBatch()
	txs := batch(1, cs...).Txs
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		steps, err := buildPlan(txs)
		if err != nil {
			b.Fatal(err)
		}
		w := split(steps[0].Segment.Tables[0])
		all := allColumns(len(t.shape.cols))
		set := nonKey(t)
		for _, part := range []struct {
			rows       []change.Row
			set, where []int
		}{{w.deletes, nil, t.shape.keys}, {w.inserts, all, nil}, {w.updates, set, t.shape.keys}, {w.partial[0].Rows, w.partial[0].Cols, t.shape.keys}} {
			if _, err := s.binds(t, part.rows, part.set, part.where, false); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(cs)), "ns/row")
}
