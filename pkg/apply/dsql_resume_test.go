package apply_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/dsqltest"
	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/apply"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/sink/postgres"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// TestDSQLResumeAfterEveryChunk runs the apply worker over one trail into
// the aurora-dsql flavor of the postgres sink, once for every target
// transaction (chunk) a clean run commits: run k fails the k-th chunk
// transaction (a retriable error at its COMMIT, so chunks 1..k-1 are
// committed and k is not, as when the process dies between them), and the
// worker resumes from the sink's position with a new sink, the batches cut
// afresh from there. The keyless target table must end with every row
// exactly once, whatever the chunk: several source transactions in one
// batch, a transaction that spans batches (Partial), one exactly a batch
// long, transactions without changes, marks in the middle of a batch.
//
// The invariant: after a crash between the commits of chunks k-1 and k,
// the resumed apply skips exactly what chunks 1..k-1 applied.
func TestDSQLResumeAfterEveryChunk(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a PostgreSQL server")
	}
	// DSQL tokens are signed offline with these; the trusting test server
	// ignores them.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	c := pgtest.StartT(t, pgtest.Options{Name: "dsqlresume", Conf: dsqltest.Conf()})

	// Rows per source transaction; 0 is a transaction with only a
	// heartbeat. Batches close at 1,000 rows, chunks hold 399.
	sizes := []int{10, 2500, 300, 300, 0, 300, 300, 1000, 50, 7, 1700, 0, 3}
	dir := t.TempDir()
	lastSeq, total := writeSizes(t, dir, sizes)

	run := func(db string, failAt int) {
		t.Helper()
		c.ExecT(t, "postgres", "CREATE DATABASE "+db)
		dsqltest.Install(t, c, db)
		c.ExecT(t, db, "CREATE TABLE public.hist (id int, v text)", // no key: a duplicate shows
			"CREATE SCHEMA cdcd",
			`CREATE TABLE cdcd.checkpoint (name text PRIMARY KEY, seq bigint NOT NULL, end_lsn text NOT NULL,
	applied_lsn text NOT NULL DEFAULT '0/0', tx_lsn text NOT NULL DEFAULT '0/0', tx_changes bigint NOT NULL DEFAULT 0,
	tx_chunk bigint NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now())`,
			"CREATE SEQUENCE public.commits",
			// The failAt-th chunk transaction fails at COMMIT with a
			// connection error (retriable), once: sequences ignore rollbacks.
			fmt.Sprintf(`CREATE FUNCTION public.crash() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF nextval('public.commits') = %d THEN
		RAISE EXCEPTION 'test: the process dies before this chunk commits' USING ERRCODE = '08006';
	END IF;
	RETURN NULL;
END $$`, failAt),
			`CREATE CONSTRAINT TRIGGER crash AFTER INSERT OR UPDATE ON cdcd.checkpoint DEFERRABLE INITIALLY DEFERRED
	FOR EACH ROW EXECUTE FUNCTION public.crash()`)

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		dsn := c.DSN(db)
		w, err := apply.New(apply.Config{Name: "target", TrailDir: dir, MaxRows: 1000, MaxDelay: time.Hour, // batches cut by size only: the same every run
			MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond},
			func(ctx context.Context) (sink.Sink, error) {
				return postgres.New(ctx, postgres.Config{Name: "target", DSN: dsn, Flavor: postgres.FlavorDSQL,
					DSQL: postgres.DSQLConfig{Region: "us-east-1", MaxTxRows: 400}}, nil)
			})
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		require.Eventually(t, func() bool { return w.Stats().Position.Seq == lastSeq || w.Stats().Stopped },
			time.Minute, 5*time.Millisecond, "run %s did not catch up", db)
		cancel()
		require.NoError(t, <-done)
		st := w.Stats()
		require.False(t, st.Stopped, st.LastError)
		if failAt > 0 {
			require.Equal(t, uint64(1), st.Retries, "run %s: one crash, one resume (%s)", db, st.LastError)
		}
		var n, distinct int
		require.NoError(t, queryRow(c, db, "SELECT count(*), count(DISTINCT id) FROM public.hist", &n, &distinct))
		require.Equal(t, total, n, "run %s (crash before chunk %d): every row exactly once", db, failAt)
		require.Equal(t, total, distinct, "run %s", db)
		var mark string
		require.NoError(t, queryRow(c, db, "SELECT seq || '|' || tx_lsn || '|' || tx_changes FROM cdcd.checkpoint", &mark))
		require.Equal(t, strconv.FormatUint(lastSeq, 10)+"|0/0|0", mark, "run %s", db)
	}

	run("clean", 0)
	var chunks int
	require.NoError(t, queryRow(c, "clean", "SELECT last_value FROM public.commits", &chunks))
	require.Greater(t, chunks, len(sizes), "large transactions were split")
	for k := 1; k <= chunks; k++ {
		run(fmt.Sprintf("crash_%d", k), k)
	}
	t.Logf("%d rows in %d source transactions, %d chunks; a crash before each chunk resumed exactly", total, len(sizes), chunks)
}

// writeSizes writes one source transaction per size (that many inserts
// into public.hist, ids numbered globally; a heartbeat for 0) and returns
// the seq of the last COMMIT and the number of rows.
func writeSizes(t *testing.T, dir string, sizes []int) (lastSeq uint64, rows int) {
	t.Helper()
	w, err := trail.Open(dir, trail.Options{})
	require.NoError(t, err)
	defer w.Close()
	hist := &change.Relation{OID: 7, Schema: "public", Name: "hist", ReplicaIdentity: 'd', Columns: []change.Column{
		{Name: "id", TypeOID: 23, TypeName: "int4", TypeMod: -1}, {Name: "v", TypeOID: 25, TypeName: "text", TypeMod: -1}}}
	lsn := change.LSN(0x1000000)
	for _, n := range sizes {
		lsn += 0x10000
		x := &change.Tx{XID: uint32(lsn >> 8), FinalLSN: lsn, CommitLSN: lsn, EndLSN: lsn + 0x10, CommitTime: time.Now()}
		require.NoError(t, w.Begin(x))
		if n == 0 {
			require.NoError(t, w.Change(&change.Change{Op: change.OpMessage, Message: &change.Message{Transactional: true, Prefix: sink.HeartbeatPrefix, Content: []byte("x")}}))
		}
		for range n {
			rows++
			id := strconv.Itoa(rows)
			require.NoError(t, w.Change(&change.Change{Op: change.OpInsert, Relation: hist, New: change.Row{change.Text(id), change.Text("v" + id)}}))
		}
		require.NoError(t, w.Commit(x))
	}
	_, err = w.Sync()
	require.NoError(t, err)
	return w.Durable().Seq - 1, rows
}

func queryRow(c *pgtest.Cluster, db, sql string, dst ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, sql).Scan(dst...)
}
