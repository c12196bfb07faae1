package snapshot

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/schema"
)

// TestChunksPartitionCompositeKey: sampled key ranges of a composite
// (text, int) key cover every row exactly once. Sorting the sample by the
// ::text output columns once ordered id 888 after 2331 and made ranges
// overlap (duplicate rows on the target).
func TestChunksPartitionCompositeKey(t *testing.T) {
	if testing.Short() {
		t.Skip("real servers")
	}
	pg := pgtest.StartT(t, pgtest.Options{})
	pg.ExecT(t, "postgres",
		`CREATE TABLE k (kind text, id int, v text, PRIMARY KEY (kind, id))`,
		`INSERT INTO k SELECT (array['cat', 'dog', E'tab\t"q"\\'])[g % 3 + 1], g, 'v' FROM generate_series(1, 3000) g`,
		`ANALYZE k`)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	require.NoError(t, err)
	defer conn.Close(ctx)
	tbl := &schema.Table{
		Source: schema.Name{Schema: "public", Name: "k"}, Target: schema.Name{Schema: "public", Name: "k"},
		Columns: []schema.Column{
			{Source: "kind", Name: "kind", TypeOID: 25, Type: "text"},
			{Source: "id", Name: "id", TypeOID: 23, Type: "integer"},
			{Source: "v", Name: "v", TypeOID: 25, Type: "text"},
		},
		PrimaryKey: []string{"kind", "id"},
		Rows:       3000,
	}
	for range 5 { // the sample is random
		cs, err := chunks(ctx, conn, tbl, 300, true)
		require.NoError(t, err)
		require.Greater(t, len(cs), 3)
		total := 0
		for _, c := range cs {
			var buf bytes.Buffer
			_, err := conn.PgConn().CopyTo(ctx, &buf, copySQL(&TableState{Table: tbl}, c, ""))
			require.NoError(t, err)
			total += strings.Count(buf.String(), "\n")
		}
		require.Equal(t, 3000, total, "chunks %v overlap or leave gaps", cs)
	}
}

// TestChunksPartitionPages: a keyless table is split into ranges of heap
// pages that cover every row exactly once, holes left by deletes and rows
// moved by updates included; the last range is open-ended, so rows on
// pages added after planning are in it.
func TestChunksPartitionPages(t *testing.T) {
	if testing.Short() {
		t.Skip("real servers")
	}
	pg := pgtest.StartT(t, pgtest.Options{})
	pg.ExecT(t, "postgres",
		`CREATE TABLE nk (a int, b text)`,
		`INSERT INTO nk SELECT g, repeat('x', g % 50) FROM generate_series(1, 20000) g`,
		`DELETE FROM nk WHERE a % 7 = 0`,
		`UPDATE nk SET b = 'moved' WHERE a % 11 = 0`,
		`ANALYZE nk`)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	require.NoError(t, err)
	defer conn.Close(ctx)
	tbl := &schema.Table{
		Source: schema.Name{Schema: "public", Name: "nk"}, Target: schema.Name{Schema: "public", Name: "nk"},
		Columns: []schema.Column{
			{Source: "a", Name: "a", TypeOID: 23, Type: "integer"},
			{Source: "b", Name: "b", TypeOID: 25, Type: "text"},
		},
	}
	require.NoError(t, conn.QueryRow(ctx, "SELECT reltuples::int8 FROM pg_class WHERE oid = 'nk'::regclass").Scan(&tbl.Rows))
	cs, err := chunks(ctx, conn, tbl, 2000, true)
	require.NoError(t, err)
	require.Greater(t, len(cs), 4, "split into page ranges")
	require.Zero(t, cs[len(cs)-1].ToPage, "the last range is open-ended")
	one, err := chunks(ctx, conn, tbl, 2000, false)
	require.NoError(t, err)
	require.Len(t, one, 1, "one chunk where page ranges are not allowed")
	pg.ExecT(t, "postgres", `INSERT INTO nk SELECT g, 'late' FROM generate_series(1, 3000) g`)
	want := 20000 - 20000/7 + 3000
	total := 0
	for _, c := range cs {
		require.True(t, c.Pages)
		var buf bytes.Buffer
		_, err := conn.PgConn().CopyTo(ctx, &buf, copySQL(&TableState{Table: tbl}, c, ""))
		require.NoError(t, err)
		total += strings.Count(buf.String(), "\n")
	}
	require.Equal(t, want, total, "chunks %v overlap or leave gaps", cs)
}
