package capture_test

import (
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
)

// TestForwardedTrail: with Source.ForwardStreamed a streamed transaction
// is in the trail once, in commit order, whether it was forwarded as it
// arrived (BEGIN without a commit position, COMMIT with it) or withdrawn —
// when it altered its table (the catalog cannot tell its schema yet), or
// when another transaction committed in the middle of it — and then
// written whole at its commit (after that other one, BEGIN with its commit
// position).
func TestForwardedTrail(t *testing.T) {
	src := pgtest.StartT(t, pgtest.Options{Name: "source", Conf: map[string]string{"logical_decoding_work_mem": "64kB"}})
	src.ExecT(t, "postgres", `CREATE TABLE big (id int PRIMARY KEY, pad text)`, `CREATE TABLE small (id int PRIMARY KEY)`,
		// A DEFERRABLE key is no replica identity: pgoutput flags no column.
		`CREATE TABLE deferred (id int, pad text, PRIMARY KEY (id) DEFERRABLE)`)
	dir := t.TempDir()
	cfg := testConfig(src, dir)
	cfg.Source.ForwardStreamed = true
	r := startCapture(t, cfg)
	src.WaitSlotActiveT(t, "cdcd")

	// Forwarded and committed.
	src.ExecT(t, "postgres", `INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
	src.ExecT(t, "postgres", `INSERT INTO deferred SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
	r.waitPast(t, marker(t, src), time.Minute)
	require.Equal(t, uint64(2), r.c.Stats().Forwarded)
	require.Zero(t, r.c.Stats().Withdrawn, "a deferrable key is not a changed key")
	// Each transaction below waits halfway for an advisory lock the test
	// holds, until the test has seen what it waits for.
	psql := func(sql string) *exec.Cmd { return src.StartPsqlT(t, "postgres", sql) }
	hold := func(key int) (release func()) {
		h := psql(fmt.Sprintf(`SELECT pg_advisory_lock(%d), pg_sleep(600)`, key))
		require.Eventually(t, func() bool {
			var n int
			return query(src, fmt.Sprintf(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %d AND granted`, key), &n) == nil && n == 1
		}, time.Minute, 5*time.Millisecond)
		return func() {
			src.ExecT(t, "postgres", fmt.Sprintf(`SELECT pg_cancel_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = %d AND granted`, key))
			require.Error(t, h.Wait(), "the holder's sleep was cancelled")
		}
	}
	withdrawn := func(n uint64) {
		t.Helper()
		require.Eventually(t, func() bool { return r.c.Stats().Withdrawn == n }, time.Minute, 5*time.Millisecond)
	}

	// Withdrawn: it adds a column halfway, which the catalog shows only
	// after its commit.
	release := hold(7)
	altering := psql(`BEGIN;
		INSERT INTO big SELECT g, md5(g::text) FROM generate_series(100001, 120000) g;
		ALTER TABLE big ADD COLUMN extra int DEFAULT 7;
		INSERT INTO big SELECT g, md5(g::text), 8 FROM generate_series(120001, 130000) g;
		SELECT pg_advisory_xact_lock(7);
		COMMIT;`)
	withdrawn(1)
	release()
	require.NoError(t, altering.Wait())
	r.waitPast(t, marker(t, src), time.Minute)
	seq := r.c.Trail().NextSeq()

	// Withdrawn: small commits while it waits halfway.
	release = hold(8)
	long := psql(`BEGIN; INSERT INTO big SELECT g, md5(g::text) FROM generate_series(20001, 40000) g;
		SELECT pg_advisory_xact_lock(8); DELETE FROM big WHERE id % 2 = 0 AND id <= 40000; COMMIT;`)
	// Its first segments are in the trail: the 20000 rows exceed 64kB
	// many times.
	require.Eventually(t, func() bool { return r.c.Trail().NextSeq() > seq+10000 }, time.Minute, 5*time.Millisecond)
	src.ExecT(t, "postgres", `INSERT INTO small VALUES (1)`)
	withdrawn(2)
	release()
	require.NoError(t, long.Wait())
	r.waitPast(t, marker(t, src), time.Minute)
	st := r.c.Stats()
	r.stop(t)

	require.Equal(t, uint64(2), st.Forwarded, "the first two; the others were withdrawn and replayed whole")
	require.Equal(t, uint64(2), st.Withdrawn)
	var got []txn
	for _, tx := range readTrail(t, dir) {
		if len(userChanges([]txn{tx})) > 0 {
			got = append(got, tx)
		}
	}
	require.Len(t, got, 5)
	first, altered, between, second := got[0], got[2], got[3], got[4]
	require.Zero(t, got[1].begin.FinalLSN, "deferred: forwarded")
	require.Equal(t, 20000, len(got[1].changes))
	require.NotZero(t, altered.begin.FinalLSN, "withdrawn, then written whole at its commit")
	require.Equal(t, 30000, len(altered.changes))
	last := altered.changes[len(altered.changes)-1]
	require.Equal(t, 3, len(last.Relation.Columns), "the rows after the ALTER have the new column")
	require.Equal(t, "8", string(col(last, last.New, "extra").Data))
	require.Zero(t, first.begin.FinalLSN, "forwarded: the BEGIN did not know the commit")
	require.NotZero(t, first.commit.FinalLSN)
	require.Equal(t, 20000, len(first.changes))
	require.Equal(t, 1, len(between.changes))
	require.Equal(t, "small", between.changes[0].Relation.Name)
	require.NotZero(t, second.begin.FinalLSN, "withdrawn, then written whole at its commit")
	require.Equal(t, 40000, len(second.changes), "20000 inserts, then 20000 deletes (even ids of both)")
	require.Greater(t, second.commit.EndLSN, between.commit.EndLSN)
	for i, c := range second.changes {
		want := change.OpInsert
		if i >= 20000 {
			want = change.OpDelete
		}
		require.Equal(t, want, c.Op, "change %d", i)
	}
}
