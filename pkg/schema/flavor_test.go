package schema

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

func TestDSQLType(t *testing.T) {
	types := []*Type{
		{Name: Name{"s", "posint"}, Kind: 'd', Base: "integer"},
		{Name: Name{"s", "code"}, Kind: 'd', Base: "character varying(8)"},
		{Name: Name{"s", "tags"}, Kind: 'd', Base: "text[]"},
		{Name: Name{"s", "mood"}, Kind: 'e', Labels: []string{"sad"}},
	}
	for _, tc := range []struct{ typ, base, want, note string }{
		{"integer", "integer", "integer", ""},
		{"numeric(12,2)", "numeric", "numeric(12,2)", ""},
		{"numeric", "numeric", DSQLNumeric, "numeric without precision as numeric(1000,500)"},
		{"character(5)", "bpchar", "character(5)", ""},
		{"timestamp(3) with time zone", "timestamp with time zone", "timestamp(3) with time zone", ""},
		{"uuid", "uuid", "uuid", ""},
		{"jsonb", "jsonb", "text", "jsonb as text"},
		{"integer[]", "integer[]", "text", "integer[] as text"},
		{"inet", "inet", "text", "inet as text"},
		{"money", "money", "text", "money as text"},
		{`"s"."mood"`, "mood", "text", `"s"."mood" as text`},
		{`"s"."posint"`, "posint", "integer", `domain "s"."posint" as integer`},
		{`"s"."code"`, "code", "character varying(8)", `domain "s"."code" as character varying(8)`},
		{`"s"."tags"`, "tags", "text", `domain "s"."tags" as text`},
	} {
		typ, note := DSQLType(Column{Type: tc.typ, BaseType: tc.base}, types)
		require.Equal(t, tc.want, typ, tc.typ)
		require.Equal(t, tc.note, note, tc.typ)
	}
	require.Equal(t, "bpchar", dsqlBase(Column{Type: `"s"."c"`}, []*Type{{Name: Name{"s", "c"}, Kind: 'd', Base: "character(3)"}}))
	require.Equal(t, "numeric", dsqlBase(Column{Type: "numeric", BaseType: "numeric"}, nil))
}

// TestFlavorDDLGolden: the DDL of both flavors for a table with a
// composite key, user types and defaults.
func TestFlavorDDLGolden(t *testing.T) {
	orders := &Table{
		Source: Name{"shop", "orders"}, Target: Name{"shop", "orders"},
		Columns: []Column{
			{Name: "tenant_id", Type: "bigint", BaseType: "bigint", NotNull: true},
			{Name: "id", Type: "integer", BaseType: "integer", NotNull: true},
			{Name: "total", Type: "numeric", BaseType: "numeric", Default: "0"},
			{Name: "status", Type: `"shop"."status"`, BaseType: "status", Default: "'new'::shop.status"},
			{Name: "meta", Type: "jsonb", BaseType: "jsonb"},
			{Name: "Placed At", Type: "timestamp with time zone", BaseType: "timestamp with time zone", Default: "'2024-01-01 00:00:00+00'::timestamp with time zone"},
		},
		PrimaryKey: []string{"tenant_id", "id"},
		Types:      []*Type{{Name: Name{"shop", "status"}, Kind: 'e', Labels: []string{"new", "paid"}}},
	}
	countries := &Table{Source: Name{"public", "countries"}, Target: Name{"public", "countries"},
		Columns: []Column{{Name: "code", Type: "character(2)", BaseType: "bpchar", NotNull: true}}, PrimaryKey: []string{"code"}, Rows: 250}

	var b strings.Builder
	b.WriteString("-- aurora-dsql: shop.orders, one statement per transaction\n")
	for _, s := range DSQLStatements(orders) {
		b.WriteString(s + ";\n")
	}
	b.WriteString("\n-- citus: shop.orders distributed by its first key column\n")
	for _, p := range []CitusPlacement{{}, {Column: "tenant_id", ColocateWith: "shop.customers"}} {
		stmts, err := CitusStatements(orders, p)
		require.NoError(t, err)
		b.WriteString(strings.Join(stmts, ";\n") + ";\n")
	}
	b.WriteString("\n-- citus: public.countries as a reference table\n")
	stmts, err := CitusStatements(countries, CitusPlacement{Reference: true})
	require.NoError(t, err)
	b.WriteString(strings.Join(stmts, ";\n") + ";\n")
	golden(t, "flavor_ddl.sql", b.String())

	_, err = CitusStatements(orders, CitusPlacement{Column: "total"})
	require.ErrorContains(t, err, "shop.orders: distribution column total is not in the primary key (tenant_id, id), as Citus requires")
	_, err = CitusStatements(&Table{Target: Name{"s", "log"}}, CitusPlacement{})
	require.ErrorContains(t, err, "s.log has no primary key")
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "go test -update writes it")
	require.Equal(t, string(want), got, "golden file %s (go test -update rewrites it)", path)
}
