package oracle

import (
	"context"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/schema"
)

func ordersTable() *schema.Table {
	n := schema.Name{Schema: "public", Name: "orders"}
	return &schema.Table{Source: n, Target: n, PrimaryKey: []string{"id"}, Columns: []schema.Column{
		{Name: "id", TypeOID: oidInt8, Type: "bigint", BaseType: "bigint"},
		{Name: "customer", TypeOID: 25, Type: "text", BaseType: "text"},
		{Name: "amount", TypeOID: oidNumeric, Type: "numeric(12,2)", BaseType: "numeric"},
		{Name: "note", TypeOID: 25, Type: "text", BaseType: "text"},
	}}
}

func checkMock(t *testing.T) (*sqlmockDB, sqlmock.Sqlmock) {
	db, mock, err := sqlmock.New(sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual), sqlmock.ValueConverterOption(passthrough{}))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return &sqlmockDB{db}, mock
}

// A user writing into its own schema, with the checkpoint table to be
// created, one table present and compatible, one missing.
func TestCheckOwnSchema(t *testing.T) {
	db, mock := checkMock(t)
	mock.ExpectQuery(currentUserSQL).WillReturnRows(sqlmock.NewRows([]string{"U", "S"}).AddRow("CDC", "CDC"))
	mock.ExpectQuery(sessionPrivsSQL).WillReturnRows(sqlmock.NewRows([]string{"P"}).AddRow("CREATE SESSION").AddRow("CREATE TABLE"))
	mock.ExpectQuery(columnsSQL).WithArgs("", "CDCD_CHECKPOINT").WillReturnRows(sqlmock.NewRows([]string{"C", "D", "P", "S", "N"}))
	expectOrdersCatalog(mock)
	mock.ExpectQuery(columnsSQL).WithArgs("", "ITEMS").WillReturnRows(sqlmock.NewRows([]string{"C", "D", "P", "S", "N"}))
	items := &schema.Table{Source: schema.Name{Schema: "public", Name: "items"}, Target: schema.Name{Schema: "public", Name: "items"}}
	got := CheckDB(context.Background(), Config{Name: "ora", DSN: "x"}, db.DB, []*schema.Table{ordersTable(), items})
	require.NoError(t, mock.ExpectationsWereMet())
	require.Equal(t, []Finding{
		{Check: "checkpoint", OK: true, Detail: `checkpoint table "CDCD_CHECKPOINT" will be created (the user has CREATE TABLE; it also needs quota on its tablespace)`},
		{Check: "tables", Detail: `1 of 2 source tables are missing on Oracle: "ITEMS"`, Remedy: "create them (the DDL cdcd would use: schema.create: true with a snapshot makes them)"},
		{Check: "privileges", OK: true, Detail: "the user may write to every existing target table"},
	}, got)
}

// A user writing into another schema needs grants; an incompatible column
// (bytea into NUMBER) is named.
func TestCheckOtherSchema(t *testing.T) {
	db, mock := checkMock(t)
	mock.ExpectQuery(currentUserSQL).WillReturnRows(sqlmock.NewRows([]string{"U", "S"}).AddRow("CDC", "CDC"))
	mock.ExpectQuery(sessionPrivsSQL).WillReturnRows(sqlmock.NewRows([]string{"P"}).AddRow("CREATE SESSION"))
	mock.ExpectQuery(columnsSQL).WithArgs("APP", "CDCD_CHECKPOINT").WillReturnRows(sqlmock.NewRows([]string{"C", "D", "P", "S", "N"}).
		AddRow("NAME", "VARCHAR2", -1, -1, "N"))
	mock.ExpectQuery(tablePrivsSQL).WithArgs("APP", "CDCD_CHECKPOINT").WillReturnRows(sqlmock.NewRows([]string{"P"}).AddRow("SELECT").AddRow("INSERT"))
	mock.ExpectQuery(columnsSQL).WithArgs("APP", "ORDERS").WillReturnRows(sqlmock.NewRows([]string{"C", "D", "P", "S", "N"}).
		AddRow("ID", "NUMBER", 19, 0, "N").AddRow("CUSTOMER", "VARCHAR2", -1, -1, "Y").AddRow("AMOUNT", "NUMBER", 12, 2, "Y").AddRow("NOTE", "CLOB", -1, -1, "Y"))
	mock.ExpectQuery(tablePrivsSQL).WithArgs("APP", "ORDERS").WillReturnRows(sqlmock.NewRows([]string{"P"}).AddRow("SELECT").AddRow("INSERT").AddRow("UPDATE"))
	tbl := ordersTable()
	tbl.Columns[3].TypeOID, tbl.Columns[3].BaseType = oidBytea, "bytea" // into CLOB: fine (text form)
	got := CheckDB(context.Background(), Config{Name: "ora", DSN: "x", Schema: "app"}, db.DB, []*schema.Table{tbl})
	require.NoError(t, mock.ExpectationsWereMet())
	require.Equal(t, []Finding{
		{Check: "checkpoint", Detail: `checkpoint table "APP"."CDCD_CHECKPOINT" exists but the user lacks UPDATE on it`, Remedy: `GRANT SELECT, INSERT, UPDATE ON "APP"."CDCD_CHECKPOINT" TO CDC`},
		{Check: "tables", OK: true, Detail: "all 1 source tables exist on Oracle with compatible columns"},
		{Check: "privileges", Detail: `the user cannot write to "APP"."ORDERS" (DELETE)`, Remedy: "GRANT SELECT, INSERT, UPDATE, DELETE ON each table TO CDC"},
	}, got)

	db, mock = checkMock(t)
	mock.ExpectQuery(currentUserSQL).WillReturnRows(sqlmock.NewRows([]string{"U", "S"}).AddRow("CDC", "CDC"))
	mock.ExpectQuery(sessionPrivsSQL).WillReturnRows(sqlmock.NewRows([]string{"P"}).AddRow("CREATE TABLE"))
	mock.ExpectQuery(columnsSQL).WithArgs("", "CDCD_CHECKPOINT").WillReturnRows(sqlmock.NewRows([]string{"C", "D", "P", "S", "N"}).AddRow("NAME", "VARCHAR2", -1, -1, "N"))
	mock.ExpectQuery(columnsSQL).WithArgs("", "ORDERS").WillReturnRows(sqlmock.NewRows([]string{"C", "D", "P", "S", "N"}).
		AddRow("ID", "NUMBER", 19, 0, "N").AddRow("CUSTOMER", "VARCHAR2", -1, -1, "Y").AddRow("AMOUNT", "NUMBER", 12, 2, "Y").AddRow("NOTE", "CLOB", -1, -1, "Y"))
	tbl = ordersTable()
	tbl.Columns[2].TypeOID, tbl.Columns[2].BaseType = oidBytea, "bytea" // into NUMBER: no
	got = CheckDB(context.Background(), Config{Name: "ora", DSN: "x"}, db.DB, []*schema.Table{tbl})
	require.NoError(t, mock.ExpectationsWereMet())
	require.Equal(t, Finding{Check: "tables", Detail: `incompatible target tables: "ORDERS": column amount: a bytea value cannot go into Oracle NUMBER`, Remedy: "add or retype the columns named"}, got[1])
}

// Without an Instant Client, Check is one finding saying what to install.
func TestCheckNoClient(t *testing.T) {
	got := Check(context.Background(), Config{Name: "ora", DSN: `user=cdc password=pw connectString="127.0.0.1:9/XE"`}, nil, 2*time.Second)
	require.NotEmpty(t, got)
	if got[0].Check == "client" && !got[0].OK {
		require.Len(t, got, 1)
		require.Contains(t, got[0].Detail, "Oracle Instant Client")
		return
	}
	// With a client installed, the closed port fails the connection.
	require.Equal(t, "connect", got[1].Check)
	require.False(t, got[1].OK)
	require.NotContains(t, got[1].Detail, "pw ")
}

// EnsureTables creates a missing table with the DDL of TableDDL and
// reports an existing table with a missing or incompatible column.
func TestEnsureTables(t *testing.T) {
	s, mock := mockSink(t, Config{})
	items := &schema.Table{Source: schema.Name{Schema: "public", Name: "items"}, Target: schema.Name{Schema: "public", Name: "items"},
		PrimaryKey: []string{"sku"}, Columns: []schema.Column{{Name: "sku", TypeOID: 25, Type: "text", NotNull: true}, {Name: "ok", Type: "boolean"}}}
	mock.ExpectQuery(columnsSQL).WithArgs("", "ITEMS").WillReturnRows(sqlmock.NewRows([]string{"C", "D", "P", "S", "N"}))
	mock.ExpectQuery(versionSQL).WillReturnRows(sqlmock.NewRows([]string{"V"}).AddRow("23.0.0.0.0"))
	mock.ExpectExec("CREATE TABLE \"ITEMS\" (\n  \"SKU\" VARCHAR2(4000 BYTE) NOT NULL,\n  \"OK\" BOOLEAN,\n  PRIMARY KEY (\"SKU\"))").
		WillReturnResult(sqlmock.NewResult(0, 0))
	created, err := s.EnsureTables(context.Background(), []*schema.Table{items}, true, true)
	require.NoError(t, err)
	require.Equal(t, []string{"public.items"}, created)
	require.NoError(t, mock.ExpectationsWereMet())

	tbl := ordersTable()
	tbl.Columns[2].TypeOID, tbl.Columns[2].BaseType = oidBytea, "bytea"
	mock.ExpectQuery(columnsSQL).WithArgs("", "ORDERS").WillReturnRows(sqlmock.NewRows([]string{"C", "D", "P", "S", "N"}).
		AddRow("ID", "NUMBER", 19, 0, "N").AddRow("AMOUNT", "NUMBER", 12, 2, "Y"))
	mock.ExpectQuery(columnsSQL).WithArgs("", "ITEMS").WillReturnRows(sqlmock.NewRows([]string{"C", "D", "P", "S", "N"}))
	_, err = s.EnsureTables(context.Background(), []*schema.Table{tbl, items}, false, true)
	require.ErrorContains(t, err, `target tables: "ORDERS" has no column "CUSTOMER", "NOTE" (source table public.orders has it): add it to the target; column amount: a bytea value cannot go into Oracle NUMBER; "ITEMS" does not exist`)
	require.NoError(t, mock.ExpectationsWereMet())
}
