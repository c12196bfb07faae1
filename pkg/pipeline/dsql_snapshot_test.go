package pipeline_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/dsqltest"
	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// TestDSQLFlavorSnapshotAndStream: schema.create and an initial snapshot
// into a DSQL-guarded target (tables by the type rule, chunks loaded in
// transactions under 3,000 rows), then the stream, large transactions
// included; the target ends equal to the source and no statement DSQL
// rejects was sent.
func TestDSQLFlavorSnapshotAndStream(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "dsqltarget", Conf: dsqltest.Conf()})
	src.ExecT(t, "postgres", `CREATE SCHEMA shop`,
		`CREATE TABLE shop.items (id int PRIMARY KEY, doc jsonb, tags text[], amount numeric, at timestamptz DEFAULT now())`,
		`INSERT INTO shop.items SELECT g, jsonb_build_object('n', g, 'k', 'v'), ARRAY['a', g::text], g / 7.0, '2024-01-01' FROM generate_series(1, 12000) g`)
	dsqltest.Install(t, dst, "postgres")

	yaml := strings.Replace(yamlConfig(src, nil, dst, t.TempDir()), "    kind: postgres\n",
		"    kind: postgres\n    flavor: aurora-dsql\n    dsql: { region: us-east-1 }\n", 1) + `
snapshot: { mode: initial, parallelism: 2, chunk_rows: 5000 }
schema: { create: true }
`
	r := startPipeline(t, yaml)
	require.Eventually(t, func() bool { return r.P.Snapshots()[0].Progress().Complete }, 3*time.Minute, 20*time.Millisecond,
		"snapshot not complete: %+v", r.P.Snapshots()[0].Progress())
	src.ExecT(t, "postgres", `UPDATE shop.items SET doc = doc || '{"u": true}', amount = amount * 2 WHERE id <= 7000`,
		`DELETE FROM shop.items WHERE id % 10 = 0`,
		`INSERT INTO shop.items (id, doc) VALUES (20000, '[1, 2]')`)
	r.WaitApplied(t, marker(t, src), 2*time.Minute)
	r.Stop(t)

	// Values keep their text form; numeric compared without the trailing
	// zeros of the scale the rule gave it.
	const q = `SELECT count(*), md5(string_agg(id || '|' || coalesce(doc::text, '') || '|' || coalesce(tags::text, '') || '|' ||
		coalesce(trim_scale(amount::numeric)::text, '') || '|' || coalesce(at::text, ''), ',' ORDER BY id)) FROM shop.items`
	var n1, n2 int64
	var h1, h2 string
	require.NoError(t, src.QueryRow(q, &n1, &h1))
	require.NoError(t, dst.QueryRow(q, &n2, &h2))
	require.Equal(t, int64(10801), n1)
	require.Equal(t, n1, n2)
	require.Equal(t, h1, h2)
	var typ string
	require.NoError(t, dst.QueryRow(`SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'shop.items'::regclass AND attname = 'doc'`, &typ))
	require.Equal(t, "text", typ, "jsonb by the type rule")
	stmts := dsqltest.Check(t, dst, "cdcd sink target")
	t.Logf("%d statements checked against DSQL's rules", len(stmts))
}
