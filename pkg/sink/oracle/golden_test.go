package oracle

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godror/godror"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/internal/typezoo"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/schema"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "missing golden file: run go test ./pkg/sink/oracle -run %s -update", t.Name())
	require.Equal(t, string(want), got, "generated SQL differs from %s (if intended: go test ./pkg/sink/oracle -run %s -update)", path, t.Name())
}

// shapeFor builds the statement shape of rel under the case rule, as the
// sink does after its catalog lookup.
func shapeFor(t *testing.T, c Case, schemaName string, rel *change.Relation) *tableShape {
	t.Helper()
	name, err := c.ident(rel.Name)
	require.NoError(t, err)
	s := &Sink{cfg: Config{Case: c}}
	if schemaName != "" {
		s.schema, err = c.ident(schemaName)
		require.NoError(t, err)
	}
	shape := &tableShape{name: s.qualify(name), keys: rel.KeyColumns()}
	for _, col := range rel.Columns {
		n, err := c.ident(col.Name)
		require.NoError(t, err)
		shape.cols = append(shape.cols, quote(n))
	}
	return shape
}

// statements writes every statement of a table's shape, and those the plan
// produces for key-change and unchanged-TOAST updates.
func statements(b *strings.Builder, title string, sh *tableShape, partial []int) {
	fmt.Fprintf(b, "-- %s: insert\n%s\n", title, insertSQL(sh))
	if len(sh.keys) > 0 {
		fmt.Fprintf(b, "-- %s: delete\n%s\n", title, deleteSQL(sh))
		var nonKeys []int
		for i := range sh.cols {
			if !sink.IsKey(sh.keys, i) {
				nonKeys = append(nonKeys, i)
			}
		}
		if len(nonKeys) > 0 { // an all-key row that exists has nothing to update
			fmt.Fprintf(b, "-- %s: update (full row)\n%s\n", title, updateSQL(sh, nonKeys))
		}
		if partial != nil {
			fmt.Fprintf(b, "-- %s: update (unchanged-TOAST columns left out)\n%s\n", title, updateSQL(sh, partial))
			fmt.Fprintf(b, "-- %s: key change (move, unchanged-TOAST columns left out)\n%s\n", title, updateSQL(sh, append(append([]int{}, sh.keys...), partial...)))
		}
		fmt.Fprintf(b, "-- %s: merge (snapshot, replay)\n%s\n", title, mergeSQL(sh))
	}
}

func TestGoldenSQL(t *testing.T) {
	var b strings.Builder
	statements(&b, "orders (upper case)", shapeFor(t, CaseUpper, "", ordersRel()), []int{1, 2})
	statements(&b, "orders (preserve case, schema app)", shapeFor(t, CasePreserve, "app", ordersRel()), nil)

	composite := &change.Relation{Schema: "public", Name: "order_lines", Columns: []change.Column{
		{Name: "order_id", TypeOID: oidInt8}, {Name: "line", TypeOID: oidInt4}, {Name: "sku", TypeOID: 25}, {Name: "qty", TypeOID: oidInt4}, {Name: "doc", TypeOID: 25}},
		PrimaryKey: []int{0, 1}}
	statements(&b, "composite key", shapeFor(t, CaseUpper, "", composite), []int{2, 3})

	quoted := &change.Relation{Schema: "public", Name: "Weird Table", Columns: []change.Column{
		{Name: "order"}, {Name: "Mixed Case \"col\""[:10]}, {Name: "date"}, {Name: "ünïcode"}, {Name: "a$b"}, {Name: "9lives"}},
		PrimaryKey: []int{0}}
	statements(&b, "quoted identifiers and reserved words", shapeFor(t, CaseUpper, "", quoted), nil)

	long := strings.Repeat("t", maxIdentBytes)
	statements(&b, "128-byte names", shapeFor(t, CaseUpper, "", &change.Relation{Schema: "public", Name: long,
		Columns: []change.Column{{Name: strings.Repeat("c", maxIdentBytes)}}, PrimaryKey: []int{0}}), nil)

	keyless := &change.Relation{Schema: "public", Name: "events", ReplicaIdentity: 'n', Columns: []change.Column{{Name: "at"}, {Name: "body"}}}
	statements(&b, "keyless (inserts only)", shapeFor(t, CaseUpper, "", keyless), nil)

	fmt.Fprintf(&b, "-- checkpoint: create\n%s\n", checkpointDDL(`"CDCD_CHECKPOINT"`))
	fmt.Fprintf(&b, "-- checkpoint: store (in the batch's transaction)\n%s\n", checkpointMergeSQL(`"CDC"."CDCD_CHECKPOINT"`))
	fmt.Fprintf(&b, "-- checkpoint: read\n%s\n", checkpointSelectSQL(`"CDCD_CHECKPOINT"`))
	fmt.Fprintf(&b, "-- truncate (in the transaction)\n%s\n", truncateSQL(`"ORDERS"`))
	golden(t, "sql.golden", b.String())
}

func TestIdentifiers(t *testing.T) {
	for in, want := range map[string]string{"order_id": "ORDER_ID", "Order_Id": "Order_Id", "my col": "my col", "a$1": "A$1", "9x": "9x", "été": "ÉTÉ"} {
		got, err := CaseUpper.ident(in)
		require.NoError(t, err)
		require.Equal(t, want, got, in)
	}
	got, err := CasePreserve.ident("order_id")
	require.NoError(t, err)
	require.Equal(t, "order_id", got)
	_, err = CaseUpper.ident(strings.Repeat("x", maxIdentBytes))
	require.NoError(t, err)
	_, err = CaseUpper.ident(strings.Repeat("x", maxIdentBytes+1))
	require.ErrorContains(t, err, "is 129 bytes: Oracle identifiers hold at most 128 bytes")
	_, err = CaseUpper.ident(strings.Repeat("é", 65)) // 130 bytes in 65 characters
	require.ErrorContains(t, err, "130 bytes")
	_, err = CaseUpper.ident(`a"b`)
	require.ErrorContains(t, err, "double quote")
}

// TestTypeZoo reads the type zoo's definition and rows from a real
// PostgreSQL: the Oracle DDL for 19c, 21c and 23ai, and the bind (Go type
// and value) or error for every value of every row, go to golden files.
func TestTypeZoo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := pgtest.StartT(t, pgtest.Options{Name: "oraclezoo"})
	c.ExecT(t, "postgres", typezoo.DDL)
	c.ExecT(t, "postgres", typezoo.Rows...)
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	require.NoError(t, err)
	defer conn.Close(ctx)
	var oid uint32
	require.NoError(t, conn.QueryRow(ctx, "SELECT 'zoo'::regclass::oid").Scan(&oid))
	tbl, err := schema.Read(ctx, conn, oid)
	require.NoError(t, err)

	// Oracle names cannot hold a double quote: the zoo's `Mixed Case "col"`
	// is refused by name, and a mapping renames it.
	_, err = TableDDL(tbl, CaseUpper, "", 19)
	require.ErrorContains(t, err, `name "Mixed Case \"col\"" contains a double quote`)
	i := tbl.Column(`Mixed Case "col"`)
	require.GreaterOrEqual(t, i, 0)
	tbl.Columns[i].Name = "Mixed Case col"

	var ddl strings.Builder
	for _, major := range []int{19, 21, 23} {
		s, err := TableDDL(tbl, CaseUpper, "", major)
		require.NoError(t, err)
		fmt.Fprintf(&ddl, "-- Oracle %d\n%s\n", major, s)
	}
	golden(t, "zoo_ddl.golden", ddl.String())

	// The values as capture receives them: text output in the walsender's
	// settings (ISO dates, postgres intervals, hex bytea); the zone is
	// an odd one, to show timestamptz binds are UTC whatever it is.
	_, err = conn.Exec(ctx, "SET datestyle = 'ISO, MDY'; SET intervalstyle = 'postgres'; SET bytea_output = 'hex'; SET timezone = 'Asia/Kolkata'")
	require.NoError(t, err)
	rel := &change.Relation{Schema: "public", Name: "zoo", PrimaryKey: []int{0}}
	var sel []string
	for _, col := range tbl.Columns {
		rel.Columns = append(rel.Columns, change.Column{Name: col.Name, TypeOID: col.TypeOID, TypeName: col.BaseType})
		sel = append(sel, pgx.Identifier{col.Source}.Sanitize())
	}
	targets := zooTargets(t, tbl, 19)
	binders := make([]*binder, len(rel.Columns))
	for i, col := range rel.Columns {
		binders[i], err = newBinder(col, targets[i], i == 0, "")
		require.NoError(t, err, col.Name)
	}
	// Raw text results: each type's output function, byte for byte what
	// pgoutput sends (a ::text cast would differ for bool and char(n)).
	res := conn.PgConn().ExecParams(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM zoo ORDER BY id", nil, nil, nil, nil).Read()
	require.NoError(t, res.Err)
	m := pgtype.NewMap()
	var out strings.Builder
	for _, vals := range res.Rows {
		fmt.Fprintf(&out, "== row %s\n", vals[0])
		for i, v := range vals {
			cv := change.Null
			if v != nil {
				cv = change.Value{Kind: change.ValueText, Data: v}
			}
			a := &colArray{}
			bind := "?"
			lob := targets[i].isLOB() && len(cv.Data) > DefaultLOBInlineBytes
			if err := binders[i].add(a, cv, m, lob); err != nil {
				require.True(t, errors.Is(err, errValue), "%s: %v", rel.Columns[i].Name, err)
				bind = "ERROR " + err.Error()
			} else {
				bind = describeBind(a.arg(binders[i].kind, lob))
			}
			fmt.Fprintf(&out, "%-26s %-30s %s\n", rel.Columns[i].Name, targets[i].DataType, bind)
		}
	}
	golden(t, "zoo_binds.golden", out.String())
}

// zooTargets is the target columns the DDL would create, as the catalog
// would describe them.
func zooTargets(t *testing.T, tbl *schema.Table, major int) []targetColumn {
	out := make([]targetColumn, len(tbl.Columns))
	for i, col := range tbl.Columns {
		typ := columnType(tbl, col, major)
		tc := targetColumn{Name: col.Name, DataType: typ, Precision: -1, Scale: -1, Nullable: !col.NotNull}
		if base, mods := splitMods(typ); base == "NUMBER" || strings.HasPrefix(typ, "NUMBER(") {
			tc.DataType = "NUMBER"
			if len(mods) > 0 {
				tc.Precision, tc.Scale = mods[0], 0
			}
			if len(mods) > 1 {
				tc.Scale = mods[1]
			}
		} else if strings.HasPrefix(typ, "VARCHAR2") || strings.HasPrefix(typ, "CHAR(") || strings.HasPrefix(typ, "RAW") {
			tc.DataType = base[:strings.IndexAny(base+"(", "( ")]
		} else if strings.HasPrefix(typ, "TIMESTAMP") || strings.HasPrefix(typ, "INTERVAL") {
			tc.DataType = typ // Oracle's DATA_TYPE keeps the precision: TIMESTAMP(6) WITH TIME ZONE
		}
		out[i] = tc
	}
	return out
}

// describeBind renders a one-element array bind as type and value.
func describeBind(v any) string {
	switch a := v.(type) {
	case []string:
		if a[0] == "" {
			return "string NULL"
		}
		return "string " + clip(strconv.Quote(a[0]))
	case []sql.NullInt64:
		if !a[0].Valid {
			return "int64 NULL"
		}
		return "int64 " + strconv.FormatInt(a[0].Int64, 10)
	case []godror.Number:
		if a[0] == "" {
			return "godror.Number NULL"
		}
		return "godror.Number " + string(a[0])
	case []sql.NullFloat64:
		if !a[0].Valid {
			return "float64 NULL"
		}
		return "float64 " + strconv.FormatFloat(a[0].Float64, 'g', -1, 64)
	case [][]byte:
		if a[0] == nil {
			return "[]byte NULL"
		}
		return fmt.Sprintf("[]byte %d bytes %s", len(a[0]), clip(fmt.Sprintf("%x", a[0])))
	case []sql.NullTime:
		if !a[0].Valid {
			return "time.Time NULL"
		}
		return "time.Time " + a[0].Time.Format("2006-01-02T15:04:05.999999999Z07:00")
	case []godror.Lob:
		if a[0].Reader == nil {
			return "godror.Lob NULL"
		}
		var n int64
		buf := make([]byte, 4096)
		for {
			k, err := a[0].Reader.Read(buf)
			n += int64(k)
			if err != nil {
				break
			}
		}
		return fmt.Sprintf("godror.Lob clob=%v %d bytes (temporary LOB)", a[0].IsClob, n)
	}
	return fmt.Sprintf("%T", v)
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + fmt.Sprintf("…(%d)", len(s))
	}
	return s
}
