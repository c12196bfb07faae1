package trigger_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

// zooDDL has a column of each of ~55 types: the PostgreSQL sink's and the
// snapshot's zoos plus geometry, ranges, bit strings, money, xml and a
// composite.
const zooDDL = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN goodmood AS mood CHECK (VALUE <> 'sad');
CREATE TYPE pair AS (a int, b text);
CREATE TABLE zoo (
  id int8 PRIMARY KEY, kind text,
  i2 int2, i4 int4, i8 int8, num numeric, numf numeric(40,10), r float4, d float8,
  b bool, ch char(5), vc varchar(20), t text, nm name, "char" "char", by bytea,
  dt date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
  u uuid, j json, jb jsonb, jp jsonpath, x xml, ip inet, net cidr, mac macaddr, mac8 macaddr8,
  bits bit(4), vb varbit, money money, pt point, ln line, ls lseg, bx box, pa path, pg polygon, ci circle,
  tsv tsvector, tsq tsquery, i4r int4range, tsr tstzrange, nr numrange, mr int4multirange,
  ia int[], ta text[], ia2 int[][], m mood, ma mood[], p posint, g goodmood, pr pair, pra pair[],
  o oid, lsn pg_lsn, "Mixed Case ""col""" text, big text)`

// zooWrites runs in a session whose settings differ from every pinned one,
// so the test shows the stored text does not depend on the writer.
var zooWrites = []string{
	`SET datestyle = 'SQL, DMY'; SET intervalstyle = 'sql_standard'; SET extra_float_digits = 0;
	 SET bytea_output = 'escape'; SET timezone = 'Asia/Kolkata'`,
	`INSERT INTO zoo VALUES (1, 'extremes',
	  -32768, 2147483647, 9223372036854775807, 'NaN', '123456789012345678901234567890.0123456789', '-0', 'Infinity',
	  true, 'ab', 'vc', E'tëxt ''q'' "dq" \\ back\ttab\nnl (paren), comma', 'name', 'x', '\x00ff10',
	  '2024-02-29', '13:14:15.123456', '13:14:15+05:30', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.123456+02',
	  '1 year 2 mons -3 days 04:05:06.789',
	  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2.50, "x"],   "spaces" : true}', '{"b": 1e400, "a": [1, 2.50]}',
	  '$.a[*] ? (@ > 1)', '<r a="1">x &amp; y</r>', '10.0.0.1', '10.1.0.0/16', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05',
	  B'1010', B'110', 1234.56, '(1.5,-2)', '{1,2,3}', '[(0,0),(1,1)]', '((0,0),(2,2))', '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(1,0))', '<(1,1),5>',
	  to_tsvector('english', 'the quick brown fox'), 'fox & !dog', '[1,10)', '[2024-01-01 00:00+00,infinity)', '(,5.5]', '{[1,3), [5,7)}',
	  '{1,NULL,3}', '{"a b",NULL,"q\"z","b\\c","",NULL}', '{{1,2},{3,4}}', 'it''s', '{sad,happy}', 5, 'happy', '(1,"x, y")', ARRAY['(2,)'::pair, '(,"")'::pair],
	  4294967295, '16/B374D848', 'mixed', repeat(md5('a'), 8000))`,
	`INSERT INTO zoo VALUES (2, 'negatives',
	  0, -1, -9223372036854775808, '-0.000000001', '-1e-10', 'NaN', '-Infinity',
	  false, '     ', '', '', '', ' ', '\x',
	  '4713-01-01 BC', '24:00:00', '00:00:00-15:59', 'infinity', '-infinity', '-178956970 years -8 mons -2147483648 days -04:05:06.000001',
	  '00000000-0000-0000-0000-000000000000', '"just a string"', 'null', '$', '<e/>', '::1', '::/0', '00:00:00:00:00:00', '00:00:00:00:00:00:00:00',
	  B'0000', B'', -0.01, '(NaN,Infinity)', '{1,-1,0}', '[(1e-300,1e300),(0,0)]', '((0,0),(0,0))', '((0,0))', '((0,0))', '<(0,0),0>',
	  '', '!a', 'empty', 'empty', 'empty', '{}',
	  '{}', '{}', '{}', 'sad', '{}', 1, 'ok', '(,)', '{}',
	  0, '0/0', '', '')`,
	`INSERT INTO zoo (id, kind) VALUES (3, NULL)`,
	`INSERT INTO zoo SELECT 4, 'toast', i2, i4, i8, num, numf, r, d, b, ch, vc, t, nm, "char", decode(repeat(md5('b'), 9000), 'hex'),
	   dt, tm, ttz, ts, tstz, iv, u, j, jb, jp, x, ip, net, mac, mac8, bits, vb, money, pt, ln, ls, bx, pa, pg, ci,
	   tsv, tsq, i4r, tsr, nr, mr, ia, ta, ia2, m, ma, p, g, pr, pra, o, lsn, "Mixed Case ""col""",
	   (SELECT string_agg(md5(g::text), ' ') FROM generate_series(1, 10000) g) FROM zoo WHERE id = 1`,
	`UPDATE zoo SET kind = 'updated', d = '-0', r = 'Infinity' WHERE id = 1`,
	`UPDATE zoo SET id = 20 WHERE id = 2`,
	`UPDATE zoo SET kind = 'toast updated' WHERE id = 4`,
	`DELETE FROM zoo WHERE id = 3`,
}

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
			c.ExecT(t, "postgres", zooDDL, `CREATE TABLE zoo_copy (LIKE zoo)`)
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
