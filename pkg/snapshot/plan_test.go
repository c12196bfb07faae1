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
		cs, err := chunks(ctx, conn, tbl, 300)
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
