package trigger_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/internal/typezoo"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

// zooWrites are the zoo's rows, then updates (an unchanged TOAST value,
// a key change) and a delete.
var zooWrites = append(append([]string(nil), typezoo.Rows...),
	`UPDATE zoo SET kind = 'updated', d = '-0', r = 'Infinity' WHERE id = 1`,
	`UPDATE zoo SET id = 20 WHERE id = 2`,
	`UPDATE zoo SET kind = 'toast updated' WHERE id = 4`,
	`DELETE FROM zoo WHERE id = 3`)

// TestTypeZoo: every value comes back as its type's text output, byte for
// byte, whatever the writer's session settings; applied to a copy of the
// table it gives identical rows.
func TestTypeZoo(t *testing.T) {
	for _, tc := range []struct {
		v    pgtest.Version
		opts trigger.Options
	}{{pgtest.V15, trigger.Options{}}, {pgtest.V17, trigger.Options{}}, {pgtest.V15, trigger.Options{RowTriggers: true}}} {
		t.Run(fmt.Sprintf("PG%d/row=%t", tc.v, tc.opts.RowTriggers), func(t *testing.T) {
			c := pgtest.StartT(t, pgtest.Options{Name: "source", Version: tc.v})
			c.ExecT(t, "postgres", typezoo.DDL, `CREATE TABLE zoo_copy (LIKE zoo)`)
			conn := connect(t, c, "")
			ctx := testCtx(t)
			require.NoError(t, trigger.Install(ctx, conn, []trigger.Table{{Schema: "public", Name: "zoo"}}, tc.opts))
			pos, err := trigger.Start(ctx, conn)
			require.NoError(t, err)
			c.ExecT(t, "postgres", strings.Join(zooWrites, ";\n"))

			b, err := trigger.NewReader().Poll(ctx, conn, pos)
			require.NoError(t, err)
			require.Len(t, b.Txs, 1, "one transaction (one Exec of several statements)")
			rep := replica{}
			require.NoError(t, rep.apply(b.Txs[0]))
			require.Equal(t, tableTexts(t, conn, "zoo", 1), rep["public.zoo"], "text values equal the source's text output byte for byte")

			rel := b.Txs[0].Changes[0].Relation
			require.Equal(t, []int{0}, rel.PrimaryKey)
			require.Equal(t, "public.mood", rel.Columns[rel.Column("m")].TypeName)
			require.Equal(t, "_int4", rel.Columns[rel.Column("ia")].TypeName)
			require.Equal(t, "numeric", rel.Columns[rel.Column("numf")].TypeName)
			var ops []string
			for _, ch := range b.Txs[0].Changes {
				s := ch.Op.String()
				if ch.Old != nil {
					s += fmt.Sprintf("(old %s, key only %t)", ch.Old[0], ch.OldKeyOnly)
				}
				ops = append(ops, s)
			}
			require.Equal(t, []string{"insert", "insert", "insert", "insert", "update", "update(old 2, key only true)", "update", "delete(old 3, key only true)"}, ops)

			applySQL(t, conn, "zoo_copy", b.Txs[0].Changes)
			require.Equal(t, rowTexts(t, conn, "zoo"), rowTexts(t, conn, "zoo_copy"), "the copy has identical rows")
		})
	}
}

// rowTexts reads a table's rows as record text, ordered by id.
func rowTexts(t *testing.T, conn *pgx.Conn, table string) []string {
	rows, err := conn.Query(testCtx(t), "SELECT t::text FROM "+table+" t ORDER BY id")
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

// applySQL applies changes to table by key, passing every value as an
// untyped literal, so each goes through its column type's input function.
func applySQL(t *testing.T, conn *pgx.Conn, table string, changes []change.Change) {
	ctx := testCtx(t)
	lit := func(v change.Value) any {
		if v.IsNull() {
			return nil
		}
		return string(v.Data)
	}
	del := func(rel *change.Relation, row change.Row) {
		var where []string
		var args []any
		for _, i := range rel.KeyColumns() {
			args = append(args, lit(row[i]))
			where = append(where, fmt.Sprintf("%s = $%d", pgx.Identifier{rel.Columns[i].Name}.Sanitize(), len(args)))
		}
		_, err := conn.Exec(ctx, "DELETE FROM "+table+" WHERE "+strings.Join(where, " AND "), append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
		require.NoError(t, err)
	}
	ins := func(rel *change.Relation, row change.Row) {
		var cols, ph []string
		var args []any
		for i, col := range rel.Columns {
			cols = append(cols, pgx.Identifier{col.Name}.Sanitize())
			args = append(args, lit(row[i]))
			ph = append(ph, fmt.Sprintf("$%d", len(args)))
		}
		_, err := conn.Exec(ctx, "INSERT INTO "+table+" ("+strings.Join(cols, ", ")+") VALUES ("+strings.Join(ph, ", ")+")",
			append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
		require.NoError(t, err)
	}
	for _, c := range changes {
		switch c.Op {
		case change.OpInsert:
			ins(c.Relation, c.New)
		case change.OpUpdate:
			old := c.New
			if c.Old != nil {
				old = c.Old
			}
			del(c.Relation, old)
			ins(c.Relation, c.New)
		case change.OpDelete:
			del(c.Relation, c.Old)
		}
	}
}

// TestSchemaChange: rows written before ADD COLUMN are delivered under the
// layout they were written with; values of a column dropped since are
// skipped (the catalog no longer knows its name or type).
func TestSchemaChange(t *testing.T) {
	c := pgtest.StartT(t, pgtest.Options{Name: "source"})
	c.ExecT(t, "postgres", `CREATE TABLE s (id int PRIMARY KEY, a text, b text)`)
	conn := connect(t, c, "")
	ctx := testCtx(t)
	require.NoError(t, trigger.Install(ctx, conn, []trigger.Table{{Schema: "public", Name: "s"}}, trigger.Options{}))
	pos, err := trigger.Start(ctx, conn)
	require.NoError(t, err)
	c.ExecT(t, "postgres",
		`INSERT INTO s VALUES (1, 'a1', 'b1')`,
		`ALTER TABLE s ADD COLUMN c int DEFAULT 7`,
		`INSERT INTO s VALUES (2, 'a2', 'b2', 8)`,
		`ALTER TABLE s DROP COLUMN a`,
		`INSERT INTO s VALUES (3, 'b3', 9)`,
		`UPDATE s SET b = 'b1x' WHERE id = 1`,
		`TRUNCATE s`,
	)
	b, err := trigger.NewReader().Poll(ctx, conn, pos)
	require.NoError(t, err)
	var got []string
	for _, tx := range b.Txs {
		for _, ch := range tx.Changes {
			if ch.Op == change.OpTruncate {
				got = append(got, "truncate "+ch.Truncate.Relations[0].QualifiedName())
				continue
			}
			var cols []string
			for i, col := range ch.Relation.Columns {
				cols = append(cols, col.Name+"="+ch.New[i].String())
			}
			got = append(got, ch.Op.String()+" "+strings.Join(cols, " "))
		}
	}
	require.Equal(t, []string{
		// a's name and type are gone from the catalog: its values are skipped.
		"insert id=1 b=b1",
		"insert id=2 b=b2 c=8",
		"insert id=3 b=b3 c=9",
		"update id=1 b=b1x c=7",
		"truncate public.s",
	}, got)
	require.Equal(t, 5, b.Rows)
}
