package oracle

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"os"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// liveDSNEnv names the variable holding a real Oracle's DSN for the live
// suite (live_test.go).
const liveDSNEnv = "CDCD_TEST_ORACLE_DSN"

func TestMain(m *testing.M) {
	if os.Getenv(liveDSNEnv) == "" {
		// One visible line in `make test`, and the live tests are not run
		// (so not counted as passed).
		fmt.Fprintln(os.Stderr, "oracle sink: live suite NOT run ("+liveDSNEnv+" unset): generated SQL and recording-driver tests only; see README \"Oracle sink\" to run it")
	}
	os.Exit(m.Run())
}

// passthrough hands every bind to the recording driver as it is, typed
// slices included, so expectations compare the exact arrays godror would
// receive.
type passthrough struct{}

func (passthrough) ConvertValue(v any) (driver.Value, error) { return v, nil }

// oraErr is an error shaped like godror's *OraErr: an ORA- code, and for
// array DML the offset of the failing row.
type oraErr struct {
	code, offset int
	msg          string
}

func (e *oraErr) Error() string { return fmt.Sprintf("ORA-%05d: %s", e.code, e.msg) }
func (e *oraErr) Code() int     { return e.code }
func (e *oraErr) Offset() int   { return e.offset }

// mockSink opens a Sink on a recording driver that checks statements
// exactly, after the expected session setup (the checkpoint table exists).
func mockSink(t *testing.T, cfg Config) (*Sink, sqlmock.Sqlmock) {
	t.Helper()
	db, mock, err := sqlmock.New(sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual), sqlmock.ValueConverterOption(passthrough{}))
	require.NoError(t, err)
	if cfg.Name == "" {
		cfg.Name = "ora"
	}
	if cfg.DSN == "" {
		cfg.DSN = "unused"
	}
	mock.ExpectExec(sessionSQL).WillReturnResult(sqlmock.NewResult(0, 0))
	mock.ExpectQuery(tableExistsSQL).WithArgs("", "CDCD_CHECKPOINT").WillReturnRows(sqlmock.NewRows([]string{"n"}).AddRow(1))
	s, err := NewDB(context.Background(), cfg, db, nil)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return s, mock
}

// ordersRel is public.orders (id bigint primary key, customer text, amount
// numeric(12,2), note text); note is TOASTable.
func ordersRel() *change.Relation {
	return &change.Relation{
		OID: 1, Schema: "public", Name: "orders", ReplicaIdentity: 'd',
		Columns: []change.Column{
			{Name: "id", TypeOID: oidInt8, TypeName: "int8", Key: true},
			{Name: "customer", TypeOID: 25, TypeName: "text"},
			{Name: "amount", TypeOID: oidNumeric, TypeName: "numeric"},
			{Name: "note", TypeOID: 25, TypeName: "text"},
		},
		PrimaryKey: []int{0},
	}
}

// expectOrdersCatalog expects the lookup of ORDERS's columns.
func expectOrdersCatalog(mock sqlmock.Sqlmock) {
	mock.ExpectQuery(columnsSQL).WithArgs("", "ORDERS").WillReturnRows(
		sqlmock.NewRows([]string{"COLUMN_NAME", "DATA_TYPE", "P", "S", "NULLABLE"}).
			AddRow("ID", "NUMBER", 19, 0, "N").
			AddRow("CUSTOMER", "VARCHAR2", -1, -1, "Y").
			AddRow("AMOUNT", "NUMBER", 12, 2, "Y").
			AddRow("NOTE", "CLOB", -1, -1, "Y"))
}

const (
	ordersInsert = `INSERT INTO "ORDERS" ("ID", "CUSTOMER", "AMOUNT", "NOTE") VALUES (:1, :2, :3, :4)`
	ordersDelete = `DELETE FROM "ORDERS" WHERE "ID" = :1`
	ordersUpdate = `UPDATE "ORDERS" SET "CUSTOMER" = :1, "AMOUNT" = :2, "NOTE" = :3 WHERE "ID" = :4`
	ordersMerge  = `MERGE INTO "ORDERS" t USING (SELECT :1 "ID", :2 "CUSTOMER", :3 "AMOUNT", :4 "NOTE" FROM dual) s ON (t."ID" = s."ID")` +
		` WHEN MATCHED THEN UPDATE SET t."CUSTOMER" = s."CUSTOMER", t."AMOUNT" = s."AMOUNT", t."NOTE" = s."NOTE"` +
		` WHEN NOT MATCHED THEN INSERT ("ID", "CUSTOMER", "AMOUNT", "NOTE") VALUES (s."ID", s."CUSTOMER", s."AMOUNT", s."NOTE")`
)

func row(vals ...string) change.Row {
	r := make(change.Row, len(vals))
	for i, v := range vals {
		switch v {
		case "<null>":
			r[i] = change.Null
		case "<unchanged>":
			r[i] = change.Unchanged
		default:
			r[i] = change.Text(v)
		}
	}
	return r
}

func ins(rel *change.Relation, vals ...string) *change.Change {
	return &change.Change{Op: change.OpInsert, Relation: rel, New: row(vals...)}
}

func upd(rel *change.Relation, vals ...string) *change.Change {
	return &change.Change{Op: change.OpUpdate, Relation: rel, New: row(vals...)}
}

func del(rel *change.Relation, key string) *change.Change {
	old := make(change.Row, len(rel.Columns))
	old[rel.PrimaryKey[0]] = change.Text(key)
	return &change.Change{Op: change.OpDelete, Relation: rel, Old: old, OldKeyOnly: true}
}

// batch is one transaction of changes ending at position seq.
func batch(seq uint64, changes ...*change.Change) *sink.Batch {
	return &sink.Batch{
		Txs:      []sink.Tx{{Tx: &change.Tx{EndLSN: change.LSN(seq << 8)}, Changes: changes}},
		Position: sink.Position{Seq: seq, EndLSN: change.LSN(seq << 8)},
		Rows:     len(changes),
	}
}

func ckMerge() string { return checkpointMergeSQL(`"CDCD_CHECKPOINT"`) }

func ints(v ...int64) []sql.NullInt64 {
	out := make([]sql.NullInt64, len(v))
	for i, n := range v {
		out[i] = sql.NullInt64{Int64: n, Valid: true}
	}
	return out
}

// sqlmockDB holds a recording driver's database.
type sqlmockDB struct{ DB *sql.DB }
