package verify

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/schema"
)

func testTable() *table {
	st := &schema.Table{
		Source: schema.Name{Schema: "public", Name: "employee"}, Target: schema.Name{Schema: "hr", Name: "employees"},
		Columns: []schema.Column{
			{Source: "region", Name: "region", Type: "text"},
			{Source: "id", Name: "id", Type: "bigint"},
			{Source: "name", Name: "full name", Type: "text"},
		},
		PrimaryKey: []string{"region", "id"},
	}
	return newTable(st, "dept <> 'test'")
}

func TestSQLThroughTheMapping(t *testing.T) {
	tb := testTable()
	r := krange{Lo: []string{"eu", "5"}, Hi: []string{"it's", "7"}}
	require.Equal(t, `SELECT count(*), coalesce(sum(('x' || left(md5(ROW("region", "id", "name")::text), 16))::bit(64)::int8), 0)::text FROM ONLY "public"."employee"`+
		` WHERE ("region", "id") >= (E'eu'::text, E'5'::bigint) AND ("region", "id") < (E'it''s'::text, E'7'::bigint) AND (dept <> 'test')`,
		tb.sumSQL(tb.src(), r), "source: source names, with the row filter")
	require.Equal(t, `SELECT "region"::text, "id"::text, md5(ROW("region", "id", "full name")::text) FROM ONLY "hr"."employees"`+
		` WHERE ("region", "id") >= (E'eu'::text, E'5'::bigint) AND ("region", "id") < (E'it''s'::text, E'7'::bigint)`,
		tb.rowsSQL(tb.dst(), r), "target: target names, no filter")
	require.Equal(t, `SELECT "region"::text, "id"::text FROM (SELECT "region", "id", row_number() OVER (ORDER BY "region", "id") AS cdcd_rn FROM ONLY "hr"."employees") AS k("region", "id", cdcd_rn) WHERE cdcd_rn % 10 = 0 ORDER BY cdcd_rn`,
		tb.splitSQL(tb.dst(), krange{}, 10))
	tb.counts = true
	require.Equal(t, `SELECT count(*), '' FROM ONLY "hr"."employees"`, tb.sumSQL(tb.dst(), krange{}))
	require.Equal(t, `E'a\\b'::int8`, literalRow([]string{`a\b`}, []string{"int8"}))
	require.Equal(t, "(region, id)=(eu, 5)", tb.keyText("eu\x005"))
}

func TestSplitAtCoversTheRange(t *testing.T) {
	r := krange{Lo: []string{"1"}, Hi: []string{"100"}}
	got := splitAt(r, [][]string{{"10"}, {"50"}})
	require.Equal(t, []krange{{Lo: []string{"1"}, Hi: []string{"10"}}, {Lo: []string{"10"}, Hi: []string{"50"}}, {Lo: []string{"50"}, Hi: []string{"100"}}}, got)
	require.Equal(t, []krange{{}}, splitAt(krange{}, nil))
}

func TestMatches(t *testing.T) {
	require.True(t, matches(nil, "public", "x"))
	require.True(t, matches([]string{"orders"}, "app", "orders"))
	require.True(t, matches([]string{"app.*"}, "app", "orders"))
	require.False(t, matches([]string{"public.*", "items"}, "app", "orders"))
}

func TestTextReport(t *testing.T) {
	r := &Result{Mode: "static", LSN: "0/10", Targets: []TargetResult{{Sink: "green", Tables: []TableResult{
		{Source: "public.a", Target: "public.a", Rows: 3, TargetRows: 3, Ranges: 1, Match: true},
		{Source: "public.b", Target: "app.b", Rows: 5, TargetRows: 4, Ranges: 2,
			Missing: []string{"(id)=(1)"}, MissingCount: 3, ChangedCount: 1},
	}}}}
	var b bytes.Buffer
	r.WriteText(&b)
	out := b.String()
	require.Contains(t, out, "  public.a          rows 3/3  ranges 1  ok")
	require.Contains(t, out, "  public.b → app.b  rows 5/4  ranges 2  DIFFERS")
	require.Contains(t, out, "missing on target: (id)=(1) … (3 in all)")
	require.Contains(t, out, "changed: 1 rows (no primary key: rows cannot be named)")
	require.Contains(t, out, "summary: 2 tables on 1 target, 1 differ; 8 source rows compared")
}
