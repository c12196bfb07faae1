package oracle

import (
	"strconv"
	"strings"

	"github.com/cdcd-io/cdcd/pkg/sink"
)

// The SQL the sink runs is built here by pure functions of a table's shape,
// checked against golden files (testdata/*.golden). Binds are positional
// (:1, :2, …); with godror, a slice per bind runs the statement once per
// element in one round trip (array DML).

// tableShape is what statements need of a target table.
type tableShape struct {
	name string   // quoted, schema-qualified when the sink has a schema
	cols []string // quoted column names, in the source relation's order
	keys []int    // indexes into cols of the key columns
}

// insertSQL inserts every column: INSERT INTO t ("A", "B") VALUES (:1, :2).
// Binds: every column in order.
func insertSQL(t *tableShape) string {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(t.name)
	b.WriteString(" (")
	b.WriteString(strings.Join(t.cols, ", "))
	b.WriteString(") VALUES (")
	for i := range t.cols {
		if i > 0 {
			b.WriteString(", ")
		}
		bind(&b, i+1)
	}
	b.WriteString(")")
	return b.String()
}

// updateSQL sets the columns set of the row with the key:
// UPDATE t SET "B" = :1 WHERE "A" = :2. Binds: the set columns, then the
// key columns. A key change sets key columns too (set then includes
// them) and finds the row by its old key.
func updateSQL(t *tableShape, set []int) string {
	var b strings.Builder
	b.WriteString("UPDATE ")
	b.WriteString(t.name)
	b.WriteString(" SET ")
	n := 0
	for _, c := range set {
		if n > 0 {
			b.WriteString(", ")
		}
		n++
		b.WriteString(t.cols[c])
		b.WriteString(" = ")
		bind(&b, n)
	}
	where(&b, t, n)
	return b.String()
}

// deleteSQL deletes by key: DELETE FROM t WHERE "A" = :1. Binds: the key
// columns.
func deleteSQL(t *tableShape) string {
	var b strings.Builder
	b.WriteString("DELETE FROM ")
	b.WriteString(t.name)
	where(&b, t, 0)
	return b.String()
}

// mergeSQL writes full rows that may already exist (a snapshot overlapping
// the stream, a replay): matched rows get every non-key column, others are
// inserted. Binds: every column in order.
func mergeSQL(t *tableShape) string {
	var b strings.Builder
	b.WriteString("MERGE INTO ")
	b.WriteString(t.name)
	b.WriteString(" t USING (SELECT ")
	for i, c := range t.cols {
		if i > 0 {
			b.WriteString(", ")
		}
		bind(&b, i+1)
		b.WriteString(" ")
		b.WriteString(c)
	}
	b.WriteString(" FROM dual) s ON (")
	for i, k := range t.keys {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString("t." + t.cols[k] + " = s." + t.cols[k])
	}
	b.WriteString(")")
	first := true
	for i, c := range t.cols {
		if sink.IsKey(t.keys, i) {
			continue
		}
		if first {
			b.WriteString(" WHEN MATCHED THEN UPDATE SET ")
			first = false
		} else {
			b.WriteString(", ")
		}
		b.WriteString("t." + c + " = s." + c)
	}
	b.WriteString(" WHEN NOT MATCHED THEN INSERT (")
	b.WriteString(strings.Join(t.cols, ", "))
	b.WriteString(") VALUES (")
	for i, c := range t.cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("s." + c)
	}
	b.WriteString(")")
	return b.String()
}

// truncateSQL empties a table inside the transaction. Oracle's TRUNCATE is
// DDL and commits implicitly, which would commit the batch's earlier rows
// without their position: a DELETE keeps data and position atomic.
func truncateSQL(name string) string { return "DELETE FROM " + name }

func where(b *strings.Builder, t *tableShape, n int) {
	b.WriteString(" WHERE ")
	for i, k := range t.keys {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString(t.cols[k])
		b.WriteString(" = ")
		bind(b, n+i+1)
	}
}

func bind(b *strings.Builder, n int) {
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(n))
}

// The checkpoint table: one row per sink name. See doc.go for its format.

// checkpointDDL creates the checkpoint table.
func checkpointDDL(table string) string {
	return "CREATE TABLE " + table + ` (
  "NAME" VARCHAR2(128 CHAR) NOT NULL,
  "SEQ" NUMBER(20) NOT NULL,
  "END_LSN" VARCHAR2(17 BYTE) NOT NULL,
  "UPDATED_AT" TIMESTAMP WITH TIME ZONE DEFAULT SYSTIMESTAMP NOT NULL,
  PRIMARY KEY ("NAME"))`
}

// checkpointMergeSQL stores a sink's position. Binds: name, seq, end LSN.
func checkpointMergeSQL(table string) string {
	return "MERGE INTO " + table + ` c USING (SELECT :1 "NAME", :2 "SEQ", :3 "END_LSN" FROM dual) s ON (c."NAME" = s."NAME")` +
		` WHEN MATCHED THEN UPDATE SET c."SEQ" = s."SEQ", c."END_LSN" = s."END_LSN", c."UPDATED_AT" = SYSTIMESTAMP` +
		` WHEN NOT MATCHED THEN INSERT ("NAME", "SEQ", "END_LSN", "UPDATED_AT") VALUES (s."NAME", s."SEQ", s."END_LSN", SYSTIMESTAMP)`
}

// checkpointSelectSQL reads a sink's position. Binds: name.
func checkpointSelectSQL(table string) string {
	return `SELECT "SEQ", "END_LSN" FROM ` + table + ` WHERE "NAME" = :1`
}

// createTableSQL is the DDL for a missing target table: the columns with
// their Oracle types (see ddlType), NOT NULL where the source has it, and
// the primary key.
func createTableSQL(name string, cols []string, types []string, notNull []bool, pk []string) string {
	var b strings.Builder
	b.WriteString("CREATE TABLE ")
	b.WriteString(name)
	b.WriteString(" (")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n  ")
		b.WriteString(c)
		b.WriteString(" ")
		b.WriteString(types[i])
		if notNull[i] {
			b.WriteString(" NOT NULL")
		}
	}
	if len(pk) > 0 {
		b.WriteString(",\n  PRIMARY KEY (")
		b.WriteString(strings.Join(pk, ", "))
		b.WriteString(")")
	}
	b.WriteString(")")
	return b.String()
}
