package oracle

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/godror/godror"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// A mixed batch is one array execution per statement kind, then the
// checkpoint and COMMIT, with the exact binds.
func TestApplyStatementsAndBinds(t *testing.T) {
	s, mock := mockSink(t, Config{})
	rel := ordersRel()
	b := batch(7,
		ins(rel, "1", "ann", "10.50", "n1"),
		ins(rel, "2", "bob", "<null>", ""),
		upd(rel, "4", "dan", "4.00", "full"),          // existing row, full image
		del(rel, "5"),                                 // existing row
		upd(rel, "6", "eve", "6.10", "<unchanged>"),   // TOAST unchanged: left out
		ins(rel, "3", "cy", "3", "n3"), del(rel, "3"), // inserted and deleted: a no-op delete
	)
	mock.ExpectBegin()
	expectOrdersCatalog(mock)
	mock.ExpectExec(ordersDelete).WithArgs(ints(5, 3)).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectExec(ordersInsert).WithArgs(ints(1, 2), []string{"ann", "bob"}, []godror.Number{"10.50", ""}, []string{"n1", ""}).
		WillReturnResult(sqlmock.NewResult(0, 2))
	mock.ExpectExec(ordersUpdate).WithArgs([]string{"dan"}, []godror.Number{"4.00"}, []string{"full"}, ints(4)).
		WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectExec(`UPDATE "ORDERS" SET "CUSTOMER" = :1, "AMOUNT" = :2 WHERE "ID" = :3`).
		WithArgs([]string{"eve"}, []godror.Number{"6.10"}, ints(6)).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectExec(ckMerge()).WithArgs("ora", int64(7), change.LSN(7<<8).String()).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()
	require.NoError(t, s.Apply(context.Background(), b))
	require.Equal(t, 6, s.Statements()) // 4 DML + checkpoint + COMMIT
	require.NoError(t, mock.ExpectationsWereMet())

	mock.ExpectQuery(checkpointSelectSQL(`"CDCD_CHECKPOINT"`)).WithArgs("ora").
		WillReturnRows(sqlmock.NewRows([]string{"SEQ", "END_LSN"}).AddRow(7, change.LSN(7<<8).String()))
	p, err := s.Position(context.Background())
	require.NoError(t, err)
	require.Equal(t, sink.Position{Seq: 7, EndLSN: 7 << 8}, p)
	require.NoError(t, mock.ExpectationsWereMet())
}

// A retriable ORA- error in the middle of a Partial transaction rolls back
// both parts; neither the checkpoint nor a COMMIT ran, so the stored
// position is still the last committed one, and the retry applies the
// whole transaction again and commits it with its position.
func TestRetriableMidBatchKeepsPosition(t *testing.T) {
	ctx := context.Background()
	s, mock := mockSink(t, Config{})
	rel := ordersRel()
	first := batch(9, ins(rel, "1", "a", "1", "x"))
	first.Partial, first.Position = true, sink.Position{Seq: 8, EndLSN: 8 << 8}
	second := batch(9, ins(rel, "2", "b", "2", "y"), upd(rel, "1", "a2", "1", "x"))

	mock.ExpectBegin()
	expectOrdersCatalog(mock)
	mock.ExpectExec(ordersInsert).WithArgs(ints(1), []string{"a"}, []godror.Number{"1"}, []string{"x"}).WillReturnResult(sqlmock.NewResult(0, 1))
	require.NoError(t, s.Apply(ctx, first)) // no checkpoint, no commit: Partial
	// Key 1 was inserted by the first part: in this part it is an UPDATE,
	// after the INSERT of key 2, which fails.
	mock.ExpectExec(ordersInsert).WithArgs(ints(2), []string{"b"}, []godror.Number{"2"}, []string{"y"}).
		WillReturnError(&oraErr{code: 3113, msg: "end-of-file on communication channel"})
	mock.ExpectRollback()
	err := s.Apply(ctx, second)
	require.Error(t, err)
	require.True(t, sink.IsRetriable(err), "%v", err)
	require.Contains(t, err.Error(), "ORA-03113")
	require.NoError(t, mock.ExpectationsWereMet()) // no MERGE into the checkpoint, no COMMIT

	// The apply worker recreates the sink and reads the position: still 8.
	s2, mock2 := mockSink(t, Config{})
	mock2.ExpectQuery(checkpointSelectSQL(`"CDCD_CHECKPOINT"`)).WithArgs("ora").
		WillReturnRows(sqlmock.NewRows([]string{"SEQ", "END_LSN"}).AddRow(8, change.LSN(8<<8).String()))
	p, err := s2.Position(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(8), p.Seq)
	// It re-reads transaction 9 whole and commits it with position 9.
	whole := batch(9, ins(rel, "1", "a", "1", "x"), ins(rel, "2", "b", "2", "y"), upd(rel, "1", "a2", "1", "x"))
	mock2.ExpectBegin()
	expectOrdersCatalog(mock2)
	mock2.ExpectExec(ordersInsert).WithArgs(ints(1, 2), []string{"a2", "b"}, []godror.Number{"1", "2"}, []string{"x", "y"}).WillReturnResult(sqlmock.NewResult(0, 2))
	mock2.ExpectExec(ckMerge()).WithArgs("ora", int64(9), change.LSN(9<<8).String()).WillReturnResult(sqlmock.NewResult(0, 1))
	mock2.ExpectCommit()
	require.NoError(t, s2.Apply(ctx, whole))
	require.NoError(t, mock2.ExpectationsWereMet())
}

// A terminal error names the table, the failing row's key (from the
// driver's array offset) and Oracle's column; it is not retriable and
// nothing is committed.
func TestTerminalErrorNamesTableKeyColumn(t *testing.T) {
	s, mock := mockSink(t, Config{})
	rel := ordersRel()
	mock.ExpectBegin()
	expectOrdersCatalog(mock)
	mock.ExpectExec(ordersInsert).WithArgs(ints(1, 2), []string{"a", strings.Repeat("b", 50)}, []godror.Number{"1", "2"}, []string{"x", "y"}).
		WillReturnError(&oraErr{code: 12899, offset: 1, msg: `value too large for column "APP"."ORDERS"."CUSTOMER" (actual: 50, maximum: 20)`})
	mock.ExpectRollback()
	err := s.Apply(context.Background(), batch(3, ins(rel, "1", "a", "1", "x"), ins(rel, "2", strings.Repeat("b", 50), "2", "y")))
	require.Error(t, err)
	require.False(t, sink.IsRetriable(err))
	require.Contains(t, err.Error(), `insert into ORDERS (2 rows), row with key (id=2)`)
	require.Contains(t, err.Error(), `ORA-12899: value too large for column "APP"."ORDERS"."CUSTOMER"`)
	require.NoError(t, mock.ExpectationsWereMet())
}

// A value Oracle's NUMBER cannot hold exactly stops before any statement,
// naming table, key and column.
func TestValueNumberCannotHoldIsTerminal(t *testing.T) {
	s, mock := mockSink(t, Config{})
	rel := ordersRel()
	mock.ExpectBegin()
	expectOrdersCatalog(mock)
	mock.ExpectRollback()
	err := s.Apply(context.Background(), batch(3, ins(rel, "1", "a", "NaN", "x")))
	require.Error(t, err)
	require.False(t, sink.IsRetriable(err))
	require.Contains(t, err.Error(), "insert into ORDERS: row with key (id=1): column amount: NaN has no Oracle NUMBER")
	require.True(t, errors.Is(err, errValue))
	require.NoError(t, mock.ExpectationsWereMet())

	s, mock = mockSink(t, Config{})
	mock.ExpectBegin()
	expectOrdersCatalog(mock)
	mock.ExpectRollback()
	err = s.Apply(context.Background(), batch(3, ins(rel, "1", "a", "1.005", "x"))) // NUMBER(12,2) would round it
	require.ErrorContains(t, err, "column amount: 1.005 has 3 fraction digits, NUMBER(12,2) would round it")
	require.NoError(t, mock.ExpectationsWereMet())
}

// Rows already on the target (a replay) are MERGEd: after ORA-00001 on the
// INSERT, and when an UPDATE finds fewer rows than it was given.
func TestMergeOnlyWhereRowsMayExist(t *testing.T) {
	s, mock := mockSink(t, Config{})
	rel := ordersRel()
	mock.ExpectBegin()
	expectOrdersCatalog(mock)
	insArgs := []driver.Value{ints(1), []string{"a"}, []godror.Number{"1"}, []string{"x"}}
	mock.ExpectExec(ordersInsert).WithArgs(insArgs...).WillReturnError(&oraErr{code: 1, msg: "unique constraint (APP.SYS_C008) violated"})
	mock.ExpectExec(ordersMerge).WithArgs(insArgs...).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectExec(ordersUpdate).WithArgs([]string{"b", "c"}, []godror.Number{"2", "3"}, []string{"y", "z"}, ints(2, 3)).
		WillReturnResult(sqlmock.NewResult(0, 1)) // one of two rows missing
	mock.ExpectExec(ordersMerge).WithArgs(ints(2, 3), []string{"b", "c"}, []godror.Number{"2", "3"}, []string{"y", "z"}).
		WillReturnResult(sqlmock.NewResult(0, 2))
	mock.ExpectExec(ckMerge()).WithArgs("ora", int64(4), change.LSN(4<<8).String()).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()
	require.NoError(t, s.Apply(context.Background(), batch(4, ins(rel, "1", "a", "1", "x"), upd(rel, "2", "b", "2", "y"), upd(rel, "3", "c", "3", "z"))))
	require.NoError(t, mock.ExpectationsWereMet())

	// Snapshot rows are MERGEd directly.
	mock.ExpectBegin()
	mock.ExpectExec(ordersMerge).WithArgs(insArgs...).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectExec(ckMerge()).WithArgs("ora", int64(4), change.LSN(4<<8).String()).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()
	sb := batch(4, ins(rel, "1", "a", "1", "x"))
	sb.Snapshot = true
	require.NoError(t, s.Apply(context.Background(), sb))
	require.NoError(t, mock.ExpectationsWereMet())
}

// A failed COMMIT is retriable (its outcome is unknown: the retry reads
// the position), and the Sink then holds no transaction.
func TestCommitFailure(t *testing.T) {
	s, mock := mockSink(t, Config{})
	rel := ordersRel()
	mock.ExpectBegin()
	expectOrdersCatalog(mock)
	mock.ExpectExec(ordersDelete).WithArgs(ints(1)).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectExec(ckMerge()).WithArgs("ora", int64(2), change.LSN(2<<8).String()).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit().WillReturnError(&oraErr{code: 3135, msg: "connection lost contact"})
	err := s.Apply(context.Background(), batch(2, del(rel, "1")))
	require.True(t, sink.IsRetriable(err), "%v", err)
	require.Nil(t, s.tx)
	require.NoError(t, mock.ExpectationsWereMet())
}

// Deadlock and snapshot-too-old are retriable; constraint and identifier
// errors are terminal.
func TestClassify(t *testing.T) {
	for code, want := range map[int]bool{60: true, 54: true, 1555: true, 3113: true, 30006: true, 12541: true,
		1: false, 1400: false, 12899: false, 904: false, 942: false, 1031: false, 1017: false, 2291: false} {
		err := classify(&oraErr{code: code, msg: "x"})
		require.Equal(t, want, sink.IsRetriable(err), "ORA-%05d", code)
	}
	// Codes are also read from wrapped messages (DPI-1080: connection was closed by ORA-3113).
	require.True(t, sink.IsRetriable(classify(errors.New("insert: ORA-00060: deadlock detected"))))
	require.True(t, sink.IsRetriable(classify(errors.New("DPI-1080: connection was closed by ORA-3113"))))
	require.True(t, sink.IsRetriable(classify(context.Canceled)))
	require.False(t, sink.IsRetriable(classify(errors.New("ORA-00001: unique constraint violated"))))
}

// ” is NULL in Oracle: by default it is written as NULL (and refused in a
// key), with a placeholder it is written as the placeholder.
func TestEmptyString(t *testing.T) {
	rel := &change.Relation{Schema: "public", Name: "tags", Columns: []change.Column{
		{Name: "tag", TypeOID: 25, Key: true}, {Name: "label", TypeOID: 25}}, PrimaryKey: []int{0}}
	catalog := func(mock sqlmock.Sqlmock) {
		mock.ExpectQuery(columnsSQL).WithArgs("", "TAGS").WillReturnRows(sqlmock.NewRows([]string{"C", "D", "P", "S", "N"}).
			AddRow("TAG", "VARCHAR2", -1, -1, "N").AddRow("LABEL", "VARCHAR2", -1, -1, "Y"))
	}
	s, mock := mockSink(t, Config{})
	mock.ExpectBegin()
	catalog(mock)
	mock.ExpectRollback()
	err := s.Apply(context.Background(), batch(1, ins(rel, "", "x")))
	require.ErrorContains(t, err, "key column tag is '' (empty string), which Oracle stores as NULL: set the sink's empty_string placeholder")

	s, mock = mockSink(t, Config{})
	mock.ExpectBegin()
	catalog(mock)
	mock.ExpectExec(`INSERT INTO "TAGS" ("TAG", "LABEL") VALUES (:1, :2)`).WithArgs([]string{"a"}, []string{""}).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectExec(ckMerge()).WithArgs("ora", int64(1), change.LSN(1<<8).String()).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()
	require.NoError(t, s.Apply(context.Background(), batch(1, ins(rel, "a", ""))))
	require.NoError(t, mock.ExpectationsWereMet())

	s, mock = mockSink(t, Config{EmptyString: " "})
	mock.ExpectBegin()
	catalog(mock)
	mock.ExpectExec(`INSERT INTO "TAGS" ("TAG", "LABEL") VALUES (:1, :2)`).WithArgs([]string{" ", "b"}, []string{"x", " "}).WillReturnResult(sqlmock.NewResult(0, 2))
	mock.ExpectExec(ckMerge()).WithArgs("ora", int64(1), change.LSN(1<<8).String()).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()
	require.NoError(t, s.Apply(context.Background(), batch(1, ins(rel, "", "x"), ins(rel, "b", ""))))
	require.NoError(t, mock.ExpectationsWereMet())
}

// lobArg matches a []godror.Lob bind by content.
type lobArg []string

func (want lobArg) Match(v driver.Value) bool {
	lobs, ok := v.([]godror.Lob)
	if !ok || len(lobs) != len(want) {
		return false
	}
	for i, l := range lobs {
		if l.Reader == nil || !l.IsClob {
			return false
		}
		// sqlmock matches twice: read, then rewind.
		b, err := io.ReadAll(l.Reader)
		if sk, ok := l.Reader.(io.Seeker); ok {
			_, _ = sk.Seek(0, io.SeekStart)
		}
		if err != nil || string(b) != want[i] {
			return false
		}
	}
	return true
}

// A row with a CLOB value past the inline limit goes in its own execution
// with temporary-LOB binds; the others stay inline.
func TestLargeLOBSeparateExecution(t *testing.T) {
	s, mock := mockSink(t, Config{LOBInlineBytes: 10})
	rel := ordersRel()
	big := strings.Repeat("z", 11)
	mock.ExpectBegin()
	expectOrdersCatalog(mock)
	mock.ExpectExec(ordersInsert).WithArgs(ints(1), []string{"a"}, []godror.Number{"1"}, []string{"small"}).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectExec(ordersInsert).WithArgs(ints(2), []string{"b"}, []godror.Number{"2"}, lobArg{big}).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectExec(ckMerge()).WithArgs("ora", int64(5), change.LSN(5<<8).String()).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()
	require.NoError(t, s.Apply(context.Background(), batch(5, ins(rel, "1", "a", "1", "small"), ins(rel, "2", "b", "2", big))))
	require.Equal(t, 4, s.Statements())
	require.NoError(t, mock.ExpectationsWereMet())
}

// A key change whose new row has an unchanged TOASTed value not in the
// batch moves the row with an UPDATE of its key; a TRUNCATE is a DELETE in
// the transaction.
func TestKeyChangeMoveAndTruncate(t *testing.T) {
	s, mock := mockSink(t, Config{})
	rel := ordersRel()
	mv := &change.Change{Op: change.OpUpdate, Relation: rel, Old: row("1", "<null>", "<null>", "<null>"), OldKeyOnly: true,
		New: row("100", "a", "1", "<unchanged>")}
	tr := &change.Change{Op: change.OpTruncate, Truncate: &change.Truncate{Relations: []*change.Relation{rel}}}
	mock.ExpectBegin()
	expectOrdersCatalog(mock)
	mock.ExpectExec(`UPDATE "ORDERS" SET "ID" = :1, "CUSTOMER" = :2, "AMOUNT" = :3 WHERE "ID" = :4`).
		WithArgs(ints(100), []string{"a"}, []godror.Number{"1"}, ints(1)).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectExec(`DELETE FROM "ORDERS"`).WillReturnResult(sqlmock.NewResult(0, 10))
	mock.ExpectExec(ckMerge()).WithArgs("ora", int64(6), change.LSN(6<<8).String()).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()
	require.NoError(t, s.Apply(context.Background(), batch(6, mv, tr)))
	require.NoError(t, mock.ExpectationsWereMet())
}

// A missing target table or column is one terminal error naming it.
func TestMissingTargetTable(t *testing.T) {
	s, mock := mockSink(t, Config{})
	mock.ExpectBegin()
	mock.ExpectQuery(columnsSQL).WithArgs("", "ORDERS").WillReturnRows(sqlmock.NewRows([]string{"C", "D", "P", "S", "N"}))
	mock.ExpectRollback()
	err := s.Apply(context.Background(), batch(1, ins(ordersRel(), "1", "a", "1", "x")))
	require.ErrorContains(t, err, `target table "ORDERS" does not exist on sink "ora"`)
	require.False(t, sink.IsRetriable(err))

	s, mock = mockSink(t, Config{})
	mock.ExpectBegin()
	mock.ExpectQuery(columnsSQL).WithArgs("", "ORDERS").WillReturnRows(sqlmock.NewRows([]string{"C", "D", "P", "S", "N"}).
		AddRow("ID", "NUMBER", 19, 0, "N").AddRow("CUSTOMER", "VARCHAR2", -1, -1, "Y"))
	mock.ExpectRollback()
	err = s.Apply(context.Background(), batch(1, ins(ordersRel(), "1", "a", "1", "x")))
	require.ErrorContains(t, err, `has no column "AMOUNT", "NOTE" (source table public.orders has it)`)
	require.NoError(t, mock.ExpectationsWereMet())
}

// On this machine there is no Instant Client: New says so in one line,
// without the password. (Where one is installed, the connection to a
// closed port fails instead, retriably, also without the password.)
func TestNoInstantClient(t *testing.T) {
	_, err := New(context.Background(), Config{Name: "ora", DSN: `user=cdc password=s3cr3t connectString="127.0.0.1:9/XE"`}, nil)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cr3t")
	if errors.Is(err, ErrNoClient) {
		require.NotContains(t, err.Error(), "\n")
		require.Contains(t, err.Error(), `oracle sink "ora": the Oracle Instant Client (libclntsh.so) is not installed or not found: install Oracle Instant Client`)
		t.Log(err)
		return
	}
	require.True(t, sink.IsRetriable(err), "with an Instant Client, a closed port must be a retriable connection error: %v", err)
}

var _ = sql.ErrNoRows

// A batch with only a heartbeat message still moves the position; Close
// rolls back an open Partial transaction; a closed Sink asks to be
// recreated.
func TestHeartbeatPartialCloseAndClosed(t *testing.T) {
	ctx := context.Background()
	s, mock := mockSink(t, Config{})
	hb := &change.Change{Op: change.OpMessage, Message: &change.Message{Transactional: true, Prefix: sink.HeartbeatPrefix}}
	mock.ExpectBegin()
	mock.ExpectExec(ckMerge()).WithArgs("ora", int64(3), change.LSN(3<<8).String()).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()
	require.NoError(t, s.Apply(ctx, batch(3, hb)))

	part := batch(4, ins(ordersRel(), "1", "a", "1", "x"))
	part.Partial = true
	mock.ExpectBegin()
	expectOrdersCatalog(mock)
	mock.ExpectExec(ordersInsert).WithArgs(ints(1), []string{"a"}, []godror.Number{"1"}, []string{"x"}).WillReturnResult(sqlmock.NewResult(0, 1))
	require.NoError(t, s.Apply(ctx, part))
	mock.ExpectRollback()
	mock.ExpectClose()
	require.NoError(t, s.Close(ctx))
	require.NoError(t, mock.ExpectationsWereMet())

	err := s.Apply(ctx, batch(5, hb))
	require.True(t, sink.IsRetriable(err), "%v", err)
	require.ErrorContains(t, err, "the connection is closed: recreate the sink")
	_, err = s.Position(ctx)
	require.True(t, sink.IsRetriable(err))
}

// A lost connection at each statement of a batch in turn: the statements
// after it never run, nothing commits (a failed COMMIT has an unknown
// outcome, which the retry settles by reading the position), and the
// error is retriable. A terminal error at the same places is not.
func TestFaultAtEveryStatement(t *testing.T) {
	rel := ordersRel()
	b := batch(9, del(rel, "5"), ins(rel, "1", "a", "1", "x"), upd(rel, "4", "d", "4", "y"))
	type stmt struct {
		sql  string
		args []driver.Value
	}
	stmts := []stmt{
		{ordersDelete, []driver.Value{ints(5)}},
		{ordersInsert, []driver.Value{ints(1), []string{"a"}, []godror.Number{"1"}, []string{"x"}}},
		{ordersUpdate, []driver.Value{[]string{"d"}, []godror.Number{"4"}, []string{"y"}, ints(4)}},
		{ckMerge(), []driver.Value{"ora", int64(9), change.LSN(9 << 8).String()}},
	}
	for _, fault := range []*oraErr{{code: 3113, msg: "end-of-file on communication channel"}, {code: 2291, msg: "integrity constraint violated"}} {
		for at := 0; at <= len(stmts); at++ { // len(stmts): at COMMIT
			t.Run(fmt.Sprintf("ORA-%05d at %d", fault.code, at), func(t *testing.T) {
				s, mock := mockSink(t, Config{})
				mock.ExpectBegin()
				expectOrdersCatalog(mock)
				for i, st := range stmts[:min(at+1, len(stmts))] {
					e := mock.ExpectExec(st.sql).WithArgs(st.args...)
					if i == at {
						e.WillReturnError(fault)
					} else {
						e.WillReturnResult(sqlmock.NewResult(0, 1))
					}
				}
				if at == len(stmts) {
					mock.ExpectCommit().WillReturnError(fault)
				} else {
					mock.ExpectRollback()
				}
				err := s.Apply(context.Background(), b)
				require.Error(t, err)
				require.Equal(t, fault.code == 3113, sink.IsRetriable(err), "%v", err)
				require.NoError(t, mock.ExpectationsWereMet())
				require.Nil(t, s.tx)
			})
		}
	}
}
