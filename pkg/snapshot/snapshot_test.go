package snapshot_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// TestSnapshotWhileWriting: a 1M-row table (and a keyless one) copied in
// parallel key ranges into an empty target whose tables schema creation
// makes, while a writer keeps inserting, updating and deleting; once the
// stream has caught up, the target equals the source.
func TestSnapshotWhileWriting(t *testing.T) {
	if testing.Short() {
		t.Skip("real servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	src.ExecT(t, "postgres",
		`CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL, pad text)`,
		`INSERT INTO big SELECT g, g % 1000, 'row ' || g FROM generate_series(1, 1000000) g`,
		`CREATE TABLE nokey (a int, b text)`,
		`INSERT INTO nokey SELECT g, 'k' || g FROM generate_series(1, 5000) g`,
		`ANALYZE big`,
	)
	w := startWriter(t, src, "big", 1000000)
	stopNokey := make(chan struct{})
	nokeyDone := make(chan struct{})
	go func() { // inserts only: a keyless table cannot take updates
		defer close(nokeyDone)
		for i := 0; ; i++ {
			select {
			case <-stopNokey:
				return
			case <-time.After(5 * time.Millisecond):
			}
			_ = src.Exec(t.Context(), "postgres", "INSERT INTO nokey VALUES (-1, 'stream')")
		}
	}()
	start := time.Now()
	r := startPipeline(t, yamlConfig(src, dst, t.TempDir(), `
snapshot: { mode: initial, parallelism: 3, chunk_rows: 100000 }
schema: { create: true }
`))
	// Let the writer run through the copy, and on for a while after it so
	// the stream has changes of its own to apply.
	if !assert.Eventually(t, func() bool { return r.P.Snapshots()[0].Progress().Complete }, 2*time.Minute, 50*time.Millisecond) {
		t.Fatalf("snapshot not complete: %+v", r.P.Snapshots()[0].Progress())
	}
	copied := time.Since(start)
	after := w.writes() + 100
	require.Eventually(t, func() bool { return w.writes() >= after }, time.Minute, 10*time.Millisecond,
		"the writer stalled after the copy")
	n := w.stop(t)
	close(stopNokey)
	<-nokeyDone
	r.WaitApplied(t, src.MarkerT(t), 2*time.Minute)
	r.Stop(t)
	requireSame(t, src, dst, "big", "id")
	requireSame(t, src, dst, "nokey", "a, b")
	p := r.P.Snapshots()[0].Progress()
	require.Len(t, p.Tables, 2)
	require.Equal(t, 10, p.Tables[0].Chunks, "the 1M-row table is split into 100k-row key ranges")
	var hasPK bool
	require.NoError(t, dst.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = 'big'::regclass AND indisprimary)`, &hasPK))
	require.True(t, hasPK, "the deferred primary key was added")
	t.Logf("snapshot of 1M rows in %s while %d writes ran; target equals source", copied.Round(time.Millisecond), n)
}

// TestSchemaZoo: schema creation for tables of many column types, enums
// (also in arrays), domains (over a base type and over an enum), a composite
// primary key and constant defaults; then equality after snapshot and stream.
func TestSchemaZoo(t *testing.T) {
	if testing.Short() {
		t.Skip("real servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	src.ExecT(t, "postgres",
		`CREATE SCHEMA zoo`,
		`CREATE TYPE zoo.mood AS ENUM ('sad', 'ok', 'happy', 'it''s')`,
		`CREATE DOMAIN zoo.posint AS int NOT NULL CHECK (VALUE > 0)`,
		`CREATE DOMAIN zoo.goodmood AS zoo.mood CHECK (VALUE <> 'sad')`,
		`CREATE TABLE zoo.animals (
			kind text, id int,
			i2 smallint DEFAULT 7, i8 bigint, num numeric(12,3) DEFAULT 1.5, r real, d double precision,
			vc varchar(20) DEFAULT 'x', ch char(5), b boolean DEFAULT true, dt date, ts timestamp, tstz timestamptz,
			iv interval, tm time, u uuid, j jsonb, js json, by bytea, ip inet, cidr cidr, mac macaddr,
			ia int[], ta text[], m zoo.mood DEFAULT 'ok', ma zoo.mood[], p zoo.posint, g zoo.goodmood,
			tsv tsvector, pt point, created timestamptz DEFAULT now() NOT NULL,
			PRIMARY KEY (kind, id))`,
		`CREATE TABLE zoo.plain (id int PRIMARY KEY, n numeric, t text NOT NULL, f float8, x bytea)`,
		`INSERT INTO zoo.animals (kind, id, i2, i8, num, r, d, vc, ch, b, dt, ts, tstz, iv, tm, u, j, js, by, ip, cidr, mac, ia, ta, m, ma, p, g, tsv, pt)
		 SELECT CASE g % 3 WHEN 0 THEN 'cat' WHEN 1 THEN 'dog' ELSE 'tab	"quoted"\' END, g, g % 100, g::bigint * 1000000000, g / 7.0, g / 3.0, g / 9.0,
		   'v' || g, 'c' || (g % 10), g % 2 = 0, date '2024-01-01' + g, timestamp '2024-01-01 00:00' + g * interval '1 minute',
		   timestamptz '2024-01-01 00:00+02' + g * interval '1 second', g * interval '1 hour', time '12:00' + g * interval '1 second',
		   md5(g::text)::uuid, jsonb_build_object('g', g, 'a', array[1,2]), '{"x": [1, 2]}', decode(md5(g::text), 'hex'),
		   '10.0.0.1'::inet + g, '10.1.0.0/16', '08:00:2b:01:02:03', array[g, g + 1], array['a', 'b\c', NULL],
		   (array['sad','ok','happy','it''s'])[g % 4 + 1]::zoo.mood, array['ok','happy']::zoo.mood[], g, 'happy',
		   to_tsvector('english', 'the quick brown fox ' || g), point(g, -g)
		 FROM generate_series(1, 3000) g`,
		`UPDATE zoo.animals SET num = NULL, j = NULL, ta = NULL WHERE id % 17 = 0`,
		`INSERT INTO zoo.plain SELECT g, g * 1.25, E'line\nbreak ' || g, g / 3.0, '\x00ff' FROM generate_series(1, 2000) g`,
	)
	r := startPipeline(t, yamlConfig(src, dst, t.TempDir(), `
snapshot: { mode: initial, parallelism: 2, chunk_rows: 500 }
schema: { create: true }
`))
	r.WaitApplied(t, src.MarkerT(t), time.Minute)
	src.ExecT(t, "postgres",
		`INSERT INTO zoo.animals (kind, id, m, ma, p, g, ia) VALUES ('new', 1, 'it''s', '{sad}', 5, 'ok', '{}')`,
		`UPDATE zoo.animals SET m = 'happy', num = 2.5, ta = array['z'] WHERE id % 5 = 0`,
		`DELETE FROM zoo.animals WHERE id % 11 = 0`,
		`UPDATE zoo.plain SET t = 'updated', n = NULL WHERE id % 3 = 0`,
	)
	r.WaitApplied(t, src.MarkerT(t), time.Minute)
	r.Stop(t)
	requireSame(t, src, dst, "zoo.animals", "kind, id")
	requireSame(t, src, dst, "zoo.plain", "id")
	// The types came across as types, with their constraints and defaults.
	var labels, dom, def string
	require.NoError(t, dst.QueryRow(`SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = 'zoo.mood'::regtype`, &labels))
	require.Equal(t, "sad,ok,happy,it's", labels)
	require.NoError(t, dst.QueryRow(`SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contypid = 'zoo.posint'::regtype`, &dom))
	require.Equal(t, "CHECK ((VALUE > 0))", dom)
	require.NoError(t, dst.QueryRow(`SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'zoo.animals'::regclass AND adnum = 3`, &def))
	require.Equal(t, "7", def)
	var pk string
	require.NoError(t, dst.QueryRow(`SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'zoo.animals'::regclass AND contype = 'p'`, &pk))
	require.Equal(t, "PRIMARY KEY (kind, id)", pk)
	p := r.P.Snapshots()[0].Progress()
	for _, tp := range p.Tables {
		require.Greater(t, tp.Chunks, 1, "table %s split into key ranges", tp.Target)
	}
}

// TestSchemaMismatch: an existing target table with an incompatible column
// is one clear error naming it, and nothing is copied.
func TestSchemaMismatch(t *testing.T) {
	if testing.Short() {
		t.Skip("real servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	src.ExecT(t, "postgres", `CREATE TABLE t (id int PRIMARY KEY, v text, w int)`, `INSERT INTO t VALUES (1, 'a', 1)`)
	dst.ExecT(t, "postgres", `CREATE TABLE t (id int PRIMARY KEY, v int)`)
	r := startPipeline(t, yamlConfig(src, dst, t.TempDir(), `
snapshot: { mode: initial }
schema: { create: true }
`))
	var err error
	select {
	case err = <-r.Done:
		r.Done <- err
	case <-time.After(time.Minute):
		t.Fatal("pipeline did not stop on the mismatch")
	}
	require.ErrorContains(t, err, "public.t.v is integer, the source's public.t.v is text")
	require.ErrorContains(t, err, "public.t has no column w (integer)")
}
