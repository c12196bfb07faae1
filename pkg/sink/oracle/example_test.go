package oracle_test

import (
	"fmt"

	"github.com/cdcd-io/cdcd/pkg/schema"
	"github.com/cdcd-io/cdcd/pkg/sink/oracle"
)

// TableDDL shows the Oracle table `schema.create: true` makes for a
// PostgreSQL table, here on Oracle 19c (booleans as NUMBER(1), jsonb as
// CLOB; 21c makes JSON, 23ai BOOLEAN).
func ExampleTableDDL() {
	t := &schema.Table{
		Target:     schema.Name{Schema: "public", Name: "orders"},
		PrimaryKey: []string{"id"},
		Columns: []schema.Column{
			{Name: "id", Type: "bigint", NotNull: true},
			{Name: "amount", Type: "numeric(12,2)"},
			{Name: "paid", Type: "boolean"},
			{Name: "placed_at", Type: "timestamp(3) with time zone"},
			{Name: "Note", Type: "text"},
			{Name: "doc", Type: "jsonb"},
		},
	}
	ddl, err := oracle.TableDDL(t, oracle.CaseUpper, "app", 19)
	if err != nil {
		panic(err)
	}
	fmt.Println(ddl)
	// Output:
	// CREATE TABLE "APP"."ORDERS" (
	//   "ID" NUMBER(19) NOT NULL,
	//   "AMOUNT" NUMBER(12,2),
	//   "PAID" NUMBER(1),
	//   "PLACED_AT" TIMESTAMP(3) WITH TIME ZONE,
	//   "Note" CLOB,
	//   "DOC" CLOB,
	//   PRIMARY KEY ("ID"))
}
