package postgres

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/typezoo"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/schema"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// zooSource is a database on the plain cluster holding the type zoo.
func zooSource(t *testing.T) (*env, *schema.Table) {
	t.Helper()
	src := newEnv(t, typezoo.DDL)
	src.exec(typezoo.Rows...)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, src.dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var oid uint32
	require.NoError(t, conn.QueryRow(ctx, "SELECT 'public.zoo'::regclass::oid").Scan(&oid))
	def, err := schema.Read(ctx, conn, oid)
	require.NoError(t, err)
	return src, def
}

// TestDSQLSchemaTypeZoo creates the type zoo's table on the DSQL-guarded
// target by the type rule (golden DDL), loads the zoo's rows through the
// chunked snapshot path and applies them again through apply: every value
// arrives with its text form (numerically equal for the numeric mapped to
// explicit precision).
func TestDSQLSchemaTypeZoo(t *testing.T) {
	t.Parallel()
	src, def := zooSource(t)
	golden(t, "dsql_zoo_ddl.sql", strings.Join(schema.DSQLStatements(def), ";\n")+";\n")

	e := dsqlEnv(t)
	s := e.dsqlSink("zoo", func(c *Config) { c.DSQL.MaxTxRows = 3 }) // parts of 2 rows
	ctx := context.Background()
	created, err := s.EnsureTables(ctx, []*schema.Table{def}, true, true)
	require.NoError(t, err)
	require.Equal(t, []string{"public.zoo"}, created)
	_, err = s.EnsureTables(ctx, []*schema.Table{def}, false, false)
	require.NoError(t, err, "an existing DSQL table matches the mapped types")
	require.NoError(t, s.FinishTable(ctx, def), "the key exists already")

	// Snapshot load: COPY text from the source, loaded in parts.
	cols := make([]string, len(def.Columns))
	for i, c := range def.Columns {
		cols[i] = c.Name
	}
	var buf bytes.Buffer
	srcConn, err := pgx.Connect(ctx, src.dsn)
	require.NoError(t, err)
	defer srcConn.Close(ctx)
	_, err = srcConn.PgConn().CopyTo(ctx, &buf, "COPY public.zoo TO STDOUT")
	require.NoError(t, err)
	n, err := s.Load(ctx, &sink.BulkChunk{SnapshotID: "s1", ID: "c1", Schema: "public", Table: "zoo", Columns: cols, Truncate: true}, &buf)
	require.NoError(t, err)
	require.Equal(t, int64(4), n)
	done, err := s.Loaded(ctx, "s1")
	require.NoError(t, err)
	require.True(t, done["c1"])
	requireZooEqual(t, src, e)

	// Apply: the same rows as updates of full rows, read as text.
	rel := &change.Relation{Schema: "public", Name: "zoo", PrimaryKey: []int{0}}
	for _, c := range def.Columns {
		rel.Columns = append(rel.Columns, change.Column{Name: c.Name, TypeMod: -1})
	}
	var changes []*change.Change
	for _, id := range []string{"1", "2", "3", "4"} {
		changes = append(changes, &change.Change{Op: change.OpUpdate, Relation: rel, New: textRow(t, srcConn, id)})
	}
	e.exec("DELETE FROM public.zoo WHERE id IN (2, 4)")
	require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{dtx(0x100, changes...)}, Position: pos(1)}))
	requireZooEqual(t, src, e)
	e.checkDSQLLog("zoo")
}

// textRow reads row id of the source zoo as text values, as the output
// functions write them (what capture carries).
func textRow(t *testing.T, conn *pgx.Conn, id string) change.Row {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT * FROM public.zoo WHERE id = "+id, pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	defer rows.Close()
	require.True(t, rows.Next())
	var row change.Row
	for _, raw := range rows.RawValues() {
		if raw == nil {
			row = append(row, change.Null)
		} else {
			row = append(row, change.Text(string(raw)))
		}
	}
	return row
}

// requireZooEqual compares every value of the two zoos: as text, or as
// numeric for the columns the rule gave explicit precision.
func requireZooEqual(t *testing.T, src, dst *env) {
	t.Helper()
	for _, col := range dst.rows(`SELECT attname FROM pg_attribute WHERE attrelid = 'public.zoo'::regclass AND attnum > 0 ORDER BY attnum`) {
		q := pgx.Identifier{col}.Sanitize()
		expr := "z." + q // the output function's text, as capture carries it
		if dst.rows(`SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'public.zoo'::regclass AND attname = '` + strings.ReplaceAll(col, "'", "''") + `'`)[0] == schema.DSQLNumeric {
			// Equal but for the trailing zeros of the scale.
			expr = "CASE WHEN " + q + " = 'NaN' THEN 'NaN' ELSE trim_scale(" + q + ")::text END"
		}
		query := "SELECT z.id, " + expr + " FROM public.zoo z ORDER BY z.id"
		require.Equal(t, src.rows(query), dst.rows(query), "column %s", col)
	}
}
