package snapshot_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
	pgsink "github.com/cdcd-io/cdcd/pkg/sink/postgres"
	"github.com/cdcd-io/cdcd/pkg/snapshot"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
)

// TestKeylessPagesResume: a large keyless table is copied in parallel
// ranges of heap pages; a copy stopped with some ranges loaded resumes
// under a new snapshot by emptying the table and copying it again whole
// (rows deleted from a loaded range in between would otherwise stay on
// the target), under new chunk IDs, and the table takes the new snapshot's
// consistent point.
func TestKeylessPagesResume(t *testing.T) {
	if testing.Short() {
		t.Skip("real servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	src.ExecT(t, "postgres",
		`CREATE TABLE nokey (a int, b text)`,
		`ALTER TABLE nokey REPLICA IDENTITY FULL`,
		`INSERT INTO nokey SELECT g, 'row ' || g FROM generate_series(1, 300000) g`,
		`ANALYZE nokey`,
		`CREATE PUBLICATION pub FOR TABLE nokey`,
		`SELECT pg_create_logical_replication_slot('slot', 'pgoutput')`,
	)
	dir := t.TempDir()
	cfg := snapshot.Config{
		Mode: snapshot.ModeInitial, Parallelism: 2, ChunkRows: 10000, CreateSchema: true,
		Source:   postgres.Config{DSN: src.DSN("postgres"), Slot: "slot", Publication: "pub"},
		StateDir: dir, Sink: "target", Logger: testLogger(),
		Open: func(ctx context.Context) (sink.Sink, error) {
			return pgsink.New(ctx, pgsink.Config{Name: "target", DSN: dst.DSN("postgres")}, testLogger())
		},
	}
	chunks := func() (n int64) {
		_ = dst.QueryRow(`SELECT count(*) FROM cdcd.snapshot_chunks`, &n)
		return n
	}

	// A first copy, stopped once some ranges are loaded.
	r, err := snapshot.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	require.Eventually(t, func() bool { return chunks() >= 3 }, 2*time.Minute, time.Millisecond, "no chunk loaded")
	cancel()
	require.Error(t, <-done, "stopped")
	st, err := snapshot.LoadState(dir, "target")
	require.NoError(t, err)
	require.False(t, st.Complete)
	require.Greater(t, len(st.Tables[0].Chunks), 20, "split into page ranges")
	require.True(t, st.Tables[0].Chunks[0].Pages)
	first := st.Tables[0].Skip
	loaded := chunks()
	require.Less(t, loaded, int64(len(st.Tables[0].Chunks)), "stopped before the copy finished")

	// Rows of the first (loaded) pages go away, new ones arrive.
	src.ExecT(t, "postgres",
		`DELETE FROM nokey WHERE a <= 5000`,
		`INSERT INTO nokey SELECT -g, 'late' FROM generate_series(1, 1000) g`)

	r, err = snapshot.New(cfg)
	require.NoError(t, err)
	require.NoError(t, r.Run(t.Context()))
	st, err = snapshot.LoadState(dir, "target")
	require.NoError(t, err)
	require.True(t, st.Complete)
	requireSame(t, src, dst, "nokey", "a, b")
	ts := st.Tables[0]
	require.Equal(t, 1, ts.Round, "copied again in a new round")
	require.NotEqual(t, first, ts.Skip, "takes the new snapshot's consistent point")
	skip, err := change.ParseLSN(ts.Skip)
	require.NoError(t, err)
	require.Greater(t, skip, change.LSN(0))
	var round, other int64
	require.NoError(t, dst.QueryRow(`SELECT count(*) FILTER (WHERE chunk LIKE 'public.nokey#r1.%'), count(*) FILTER (WHERE chunk NOT LIKE 'public.nokey#r1.%') FROM cdcd.snapshot_chunks`, &round, &other))
	require.Equal(t, int64(len(ts.Chunks)+1), round, "every range of the new round and its truncation recorded once")
	require.Equal(t, loaded, other, "the first round's records stay as they were")
}
