package postgres

import (
	"strconv"
	"strings"
	"unsafe"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// Statements take their values as text arrays, one per column, unnested on
// the server and cast there to the target column types, so each statement
// moves a whole set of rows in one round trip whatever the column types:
//
//	INSERT INTO s.t AS t (a, b) OVERRIDING SYSTEM VALUE
//	SELECT CAST(u.c0 AS integer), CAST(u.c1 AS text)
//	FROM unnest($1::text[], $2::text[]) AS u(c0, c1)
//	ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b
//
//	DELETE FROM s.t AS t USING unnest($1::text[]) AS u(c0) WHERE t.a = CAST(u.c0 AS integer)
//
//	UPDATE s.t AS t SET b = CAST(u.c1 AS text)
//	FROM unnest($1::text[], $2::text[]) AS u(c0, c1) WHERE t.a = CAST(u.c0 AS integer)
//
// Casts name the type without its modifier (varchar, not varchar(20)): the
// assignment to the column then applies the modifier, which errs on a value
// that does not fit where an explicit cast would silently truncate it.

// unnestFrom returns "unnest($first::text[], …) AS u(c0, …)" for n arrays.
func unnestFrom(b *strings.Builder, n int) {
	b.WriteString("unnest(")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(i + 1))
		b.WriteString("::text[]")
	}
	b.WriteString(") AS u(")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("c")
		b.WriteString(strconv.Itoa(i))
	}
	b.WriteString(")")
}

// cast writes CAST(u.c<i> AS typ).
func cast(b *strings.Builder, i int, typ string) {
	b.WriteString("CAST(u.c")
	b.WriteString(strconv.Itoa(i))
	b.WriteString(" AS ")
	b.WriteString(typ)
	b.WriteString(")")
}

// insertSQL inserts every column of t's relation from the rows of source
// (which must name its columns u.c0, u.c1, … in relation order), upserting by
// the key when t has one. prefix goes before INSERT (a WITH clause).
func insertSQL(t *table, prefix, source string) string {
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteString("INSERT INTO ")
	b.WriteString(t.target.sql())
	b.WriteString(" AS t (")
	for i, c := range t.cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.name)
	}
	// A target identity column GENERATED ALWAYS takes the source's values.
	b.WriteString(") OVERRIDING SYSTEM VALUE SELECT ")
	for i, c := range t.cols {
		if i > 0 {
			b.WriteString(", ")
		}
		cast(&b, i, c.typ)
	}
	b.WriteString(" FROM ")
	b.WriteString(source)
	onConflict(&b, t)
	return b.String()
}

// onConflict writes the upsert clause by t's key, nothing for a keyless t.
func onConflict(b *strings.Builder, t *table) {
	if t.conflict == "" {
		return
	}
	b.WriteString(" ON CONFLICT (")
	b.WriteString(t.conflict)
	b.WriteString(") DO ")
	first := true
	for i, c := range t.cols {
		if sink.IsKey(t.keys, i) {
			continue
		}
		if first {
			b.WriteString("UPDATE SET ")
			first = false
		} else {
			b.WriteString(", ")
		}
		b.WriteString(c.name)
		b.WriteString(" = EXCLUDED.")
		b.WriteString(c.name)
	}
	if first {
		b.WriteString("NOTHING") // every column is key
	}
}

// unnestInsertSQL is insertSQL from len(t.cols) text arrays.
func unnestInsertSQL(t *table) string {
	var src strings.Builder
	unnestFrom(&src, len(t.cols))
	return insertSQL(t, "", src.String())
}

// deleteSQL deletes the rows whose keys are in the key arrays.
func deleteSQL(t *table) string {
	var b strings.Builder
	b.WriteString("DELETE FROM ")
	b.WriteString(t.target.sql())
	b.WriteString(" AS t USING ")
	unnestFrom(&b, len(t.keys))
	b.WriteString(" WHERE ")
	keyMatch(&b, t, 0)
	return b.String()
}

// keyMatch writes t.k = CAST(u.c<first+i> AS type) AND … for t's key columns.
func keyMatch(b *strings.Builder, t *table, first int) {
	for i, k := range t.keys {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString("t.")
		b.WriteString(t.cols[k].name)
		b.WriteString(" = ")
		cast(b, first+i, t.cols[k].typ)
	}
}

// updateSQL sets columns set of the rows found by key. Its arrays are the
// key columns' (the old key), then the set columns'.
func updateSQL(t *table, set []int) string {
	var b strings.Builder
	b.WriteString("UPDATE ")
	b.WriteString(t.target.sql())
	b.WriteString(" AS t SET ")
	for i, col := range set {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(t.cols[col].name)
		b.WriteString(" = ")
		cast(&b, len(t.keys)+i, t.cols[col].typ)
	}
	b.WriteString(" FROM ")
	unnestFrom(&b, len(t.keys)+len(set))
	b.WriteString(" WHERE ")
	keyMatch(&b, t, 0)
	return b.String()
}

// truncateSQL truncates tables with the source's flags.
func truncateSQL(tables []*table, tr *change.Truncate) string {
	var b strings.Builder
	b.WriteString("TRUNCATE ")
	for i, t := range tables {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(t.target.sql())
	}
	if tr.RestartIdentity {
		b.WriteString(" RESTART IDENTITY")
	}
	if tr.Cascade {
		b.WriteString(" CASCADE")
	}
	return b.String()
}

// textColumn is column col of rows as a text[] statement argument, NULL
// a NULL element. pgx encodes it element by element straight from the
// rows' bytes: no slice of its own, no value boxed per element (a slice of
// pgtype.Text went through reflection and an allocation per element). The
// batch owns the rows, does not change them, and outlives the statement.
type textColumn struct {
	rows []change.Row
	col  int
}

// Dimensions implements pgtype.ArrayGetter.
func (c textColumn) Dimensions() []pgtype.ArrayDimension {
	return []pgtype.ArrayDimension{{Length: int32(len(c.rows)), LowerBound: 1}}
}

// Index implements pgtype.ArrayGetter: nil for NULL, else a pointer into
// the row (an interface holds a pointer without allocating).
func (c textColumn) Index(i int) any {
	v := &c.rows[i][c.col]
	if v.Kind != change.ValueText {
		return nil // NULL; other kinds were rejected by the plan
	}
	return (*textElem)(v)
}

// IndexType implements pgtype.ArrayGetter.
func (c textColumn) IndexType() any { return (*textElem)(nil) }

// textElem is a text value as pgx encodes it.
type textElem change.Value

// TextValue implements pgtype.TextValuer, aliasing the value's bytes.
func (e *textElem) TextValue() (pgtype.Text, error) {
	return textValue(change.Value(*e)), nil
}

func textValue(v change.Value) pgtype.Text {
	if v.Kind != change.ValueText {
		return pgtype.Text{} // NULL; other kinds were rejected by the plan
	}
	if len(v.Data) == 0 {
		return pgtype.Text{Valid: true}
	}
	return pgtype.Text{String: unsafe.String(&v.Data[0], len(v.Data)), Valid: true}
}

// arrays returns the text arrays of the given columns of rows, as statement
// arguments.
func arrays(args []any, rows []change.Row, cols []int) []any {
	for _, c := range cols {
		args = append(args, textColumn{rows: rows, col: c})
	}
	return args
}
