package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/dsqltest"
	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/copytext"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// The DSQL tests run on a cluster of their own that logs every statement
// (dsqltest.Conf); each test's database carries the dsqltest guards, and
// each test ends by checking the statement log of its sink's sessions.
var (
	dsqlOnce    sync.Once
	dsqlCluster *pgtest.Cluster
	dsqlErr     error
)

func dsqlTestCluster(t testing.TB) *pgtest.Cluster {
	t.Helper()
	dsqlOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		dsqlCluster, dsqlErr = pgtest.Start(ctx, pgtest.Options{Name: "dsqlrules", Conf: dsqltest.Conf()})
	})
	if dsqlErr != nil {
		t.Fatal(dsqlErr)
	}
	return dsqlCluster
}

// dsqlEnv is a fresh database with the DSQL guards, and ddl run in it one
// statement per transaction.
func dsqlEnv(t testing.TB, ddl ...string) *env {
	t.Helper()
	return loggedEnv(t, true, ddl...)
}

// loggedEnv is a fresh database on the statement-logging cluster, with the
// DSQL guards when guards is set.
func loggedEnv(t testing.TB, guards bool, ddl ...string) *env {
	t.Helper()
	c := dsqlTestCluster(t)
	db := fmt.Sprintf("dsql_%d", dbSeq.Add(1))
	c.ExecT(t, "postgres", "CREATE DATABASE "+db)
	if guards {
		dsqltest.Install(t, c, db)
	}
	for _, d := range ddl {
		c.ExecT(t, db, d)
	}
	return &env{t: t, c: c, db: db, dsn: c.DSN(db)}
}

// dsqlSink opens an aurora-dsql flavored sink; tune may change its config.
func (e *env) dsqlSink(name string, tune func(*Config)) *Sink {
	e.t.Helper()
	cfg := Config{Name: name, DSN: e.dsn, Flavor: FlavorDSQL,
		tokenFunc: func(context.Context, *pgx.ConnConfig) (string, error) { return "test-token", nil }}
	if tune != nil {
		tune(&cfg)
	}
	s, err := New(context.Background(), cfg, testLogger(e.t))
	require.NoError(e.t, err)
	e.t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// checkDSQLLog fails the test on any statement of sink name's sessions
// that DSQL rejects.
func (e *env) checkDSQLLog(name string) []dsqltest.Statement {
	e.t.Helper()
	return dsqltest.Check(e.t, e.c, "cdcd sink "+name)
}

// dtx is a source transaction with its commit LSN.
func dtx(final change.LSN, changes ...*change.Change) sink.Tx {
	return sink.Tx{Tx: &change.Tx{FinalLSN: final, CommitLSN: final, EndLSN: final + 1}, Changes: changes}
}

const histDDL = "CREATE TABLE public.hist (id int, v text)" // no key: a duplicate shows

func inserts(r *change.Relation, from, to int) []*change.Change {
	var out []*change.Change
	for i := from; i < to; i++ {
		out = append(out, ins(r, strconv.Itoa(i), "v"+strconv.Itoa(i)))
	}
	return out
}

func TestDSQLSplitsLargeTransactions(t *testing.T) {
	t.Parallel()
	e := dsqlEnv(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	s := e.dsqlSink("split", nil)
	r := rel("public.t", "id pk", "v")
	ctx := context.Background()

	var ups, dels []*change.Change
	for i := range 7000 {
		ups = append(ups, upd(r, strconv.Itoa(i), "u"))
		if i%2 == 0 {
			dels = append(dels, del(r, strconv.Itoa(i)))
		}
	}
	require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{dtx(0x100, inserts(r, 0, 7000)...)}, Position: pos(1)}))
	require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{dtx(0x200, ups...), dtx(0x300, dels...)}, Position: pos(2)}))
	require.Equal(t, []string{"3500|3500"}, e.rows("SELECT count(*), count(*) FILTER (WHERE v = 'u') FROM public.t"))
	require.Equal(t, []string{"2|0/300|0/0|0|0"}, e.rows("SELECT seq, applied_lsn, tx_lsn, tx_changes, tx_chunk FROM cdcd.checkpoint WHERE name = 'split'"),
		"a complete batch leaves no partial mark")
	// 7,000 inserts need three transactions of at most 2,499 rows, and so on.
	require.GreaterOrEqual(t, s.dsql.chunksCommit, 3+3+2)
	p, err := s.Position(ctx)
	require.NoError(t, err)
	require.Equal(t, pos(2), p)
	e.checkDSQLLog("split")
}

// TestDSQLResumeSkipsAppliedChunks fails a batch after some of its chunks
// committed (a "crash" between chunks), then re-delivers the batch from the
// position, as the apply worker does: rows of the keyless table are neither
// lost nor duplicated.
func TestDSQLResumeSkipsAppliedChunks(t *testing.T) {
	t.Parallel()
	e := dsqlEnv(t, histDDL)
	r := rel("public.hist", "id", "v")
	ctx := context.Background()
	s := e.dsqlSink("resume", func(c *Config) { c.DSQL.MaxTxRows = 1000 })
	require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{dtx(0x100, inserts(r, 0, 10)...)}, Position: pos(1)}))

	// Transaction 0x200 fails at its row 4321 (a CHECK the test adds), in
	// its fourth chunk: 0x150 and three chunks of 999 rows committed (the
	// first holding 0x150's 10 rows and 989 of 0x200's).
	e.exec("ALTER TABLE public.hist ADD CONSTRAINT boom CHECK (id <> 4321)")
	full := &sink.Batch{Txs: []sink.Tx{dtx(0x150, inserts(r, 10, 20)...), dtx(0x200, inserts(r, 1000, 7000)...)}, Position: pos(3)}
	err := s.Apply(ctx, full)
	require.ErrorContains(t, err, "boom")
	require.Equal(t, []string{"1|0/150|0/200|2987|3"}, e.rows("SELECT seq, applied_lsn, tx_lsn, tx_changes, tx_chunk FROM cdcd.checkpoint"))
	require.NoError(t, s.Close(ctx))
	e.exec("ALTER TABLE public.hist DROP CONSTRAINT boom")

	// The worker reopens the sink and reads again from Position.
	s = e.dsqlSink("resume", func(c *Config) { c.DSQL.MaxTxRows = 1000 })
	p, err := s.Position(ctx)
	require.NoError(t, err)
	require.Equal(t, pos(1), p)
	// The trail is cut differently this time: a Partial batch ending
	// inside the applied part, then one past it, then the rest.
	txs := full.Txs
	part := func(tx sink.Tx, from, to int) sink.Tx { return sink.Tx{Tx: tx.Tx, Changes: tx.Changes[from:to]} }
	require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{txs[0], part(txs[1], 0, 2000)}, Partial: true, Position: pos(2)}))
	require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{part(txs[1], 2000, 4000)}, Partial: true, Position: pos(2)}))
	require.Equal(t, []string{"2|0/200|4000"}, e.rows("SELECT seq, tx_lsn, tx_changes FROM cdcd.checkpoint"))

	// Another restart: the batcher's first batch is Partial with a zero
	// Position (no COMMIT read yet in its session); the stored position
	// must not go back to it.
	require.NoError(t, s.Close(ctx))
	s = e.dsqlSink("resume", func(c *Config) { c.DSQL.MaxTxRows = 1000 })
	require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{part(txs[1], 0, 4500)}, Partial: true}))
	require.Equal(t, []string{"2|0/200|4500"}, e.rows("SELECT seq, tx_lsn, tx_changes FROM cdcd.checkpoint"))
	require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{part(txs[1], 4500, 6000)}, Position: pos(3)}))

	want := e.rows("SELECT count(*), count(DISTINCT id) FROM public.hist")
	require.Equal(t, []string{"6020|6020"}, want, "every row exactly once")
	require.Equal(t, []string{"3|0/200|0/0|0"}, e.rows("SELECT seq, applied_lsn, tx_lsn, tx_changes FROM cdcd.checkpoint"))
	e.checkDSQLLog("resume")
}

func TestDSQLRetriesConflicts(t *testing.T) {
	t.Parallel()
	e := dsqlEnv(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	dsqltest.InjectConflicts(t, e.c, e.db, 2) // every other commit fails with 40001
	s := e.dsqlSink("conflicts", nil)
	r := rel("public.t", "id pk", "v")
	ctx := context.Background()
	for i := range 5 {
		final := change.LSN(0x100 * (i + 1))
		require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{dtx(final, inserts(r, i*1000, i*1000+3000)...)}, Position: pos(uint64(i + 1))}))
	}
	require.Equal(t, []string{"7000"}, e.rows("SELECT count(*) FROM public.t"))
	require.Positive(t, dsqltest.Injected(t, e.c, e.db))
	require.Positive(t, s.dsql.retries)
	require.Equal(t, []string{"5"}, e.rows("SELECT seq FROM cdcd.checkpoint"))
	e.checkDSQLLog("conflicts")
}

func TestDSQLConflictsExhaustRetries(t *testing.T) {
	t.Parallel()
	e := dsqlEnv(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	s := e.dsqlSink("exhaust", func(c *Config) { c.DSQL.MaxRetries = 3 })
	dsqltest.InjectConflicts(t, e.c, e.db, 1) // every commit fails
	r := rel("public.t", "id pk", "v")
	err := s.Apply(context.Background(), &sink.Batch{Txs: []sink.Tx{dtx(0x100, inserts(r, 0, 10)...)}, Position: pos(1)})
	require.ErrorContains(t, err, "40001")
	require.ErrorContains(t, err, "after 3 retries")
	require.True(t, sink.IsRetriable(err), "the worker retries from its position")
	require.Equal(t, int64(4), dsqltest.Injected(t, e.c, e.db))
	require.Equal(t, []string{"0"}, e.rows("SELECT count(*) FROM public.t"))
}

func TestDSQLTruncateAsDeletes(t *testing.T) {
	t.Parallel()
	e := dsqlEnv(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)", "CREATE TABLE public.u (a int, b text, PRIMARY KEY (a, b))")
	s := e.dsqlSink("truncate", nil)
	r, u := rel("public.t", "id pk", "v"), rel("public.u", "a pk", "b pk")
	ctx := context.Background()
	require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{dtx(0x100, inserts(r, 0, 6000)...), dtx(0x200, ins(u, "1", "x"), ins(u, "2", "y"))}, Position: pos(1)}))
	require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{dtx(0x300, ins(r, "9000", "before"), trunc(true, true, r, u), ins(r, "1", "after"))}, Position: pos(2)}))
	require.Equal(t, []string{"1|after"}, e.rows("SELECT * FROM public.t"))
	require.Equal(t, []string{"0"}, e.rows("SELECT count(*) FROM public.u"))
	stmts := e.checkDSQLLog("truncate")
	deletes := 0
	for _, st := range stmts {
		if strings.HasPrefix(st.SQL, "DELETE FROM \"public\".\"t\" WHERE") {
			deletes++
		}
	}
	require.Equal(t, 4, deletes, "6,001 rows in chunks of 2,499, then an empty one")
}

func TestDSQLWorkloadUsesOnlyDSQLStatements(t *testing.T) {
	t.Parallel()
	e := dsqlEnv(t, appDDL[:strings.Index(appDDL, ";")], appDDL[strings.Index(appDDL, ";")+1:])
	s := e.dsqlSink("workload", nil)
	r := appRel()
	ctx := context.Background()
	var big []*change.Change
	for i := range 5000 {
		big = append(big, ins(r, strconv.Itoa(i), "n", strconv.Itoa(i)))
	}
	require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{dtx(0x100, big...)}, Position: pos(1)}))
	require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{
		dtx(0x200, upd(r, "1", unch, "10"), updKey(r, []string{"2"}, "20000", unch, "20"), del(r, "3")),
		dtx(0x300, ins(r, "3", "again", "3"), upd(r, "4", "x", "40"), heartbeat()),
	}, Position: pos(2)}))
	require.Equal(t, []string{"1|n|10", "3|again|3", "4|x|40", "20000|n|20"},
		e.rows("SELECT * FROM app.t WHERE id IN (1, 2, 3, 4, 20000) ORDER BY id"))
	e.checkDSQLLog("workload")
}

// TestDSQLHarnessCatchesThePlainFlavor shows the harness can fail: the plain
// flavor sets session_replication_role and loads large sets through a
// temporary staging table in one transaction.
func TestDSQLHarnessCatchesThePlainFlavor(t *testing.T) {
	t.Parallel()
	e := dsqlEnv(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	s, err := New(context.Background(), Config{Name: "plain", DSN: e.dsn}, testLogger(t))
	require.NoError(t, err)
	defer s.Close(context.Background())
	r := rel("public.t", "id pk", "v")
	err = s.Apply(context.Background(), batch(1, tx(inserts(r, 0, 4000)...)))
	require.ErrorContains(t, err, "DSQL allows 3000")
	_, problems, err := dsqltest.Violations(e.c, "cdcd sink plain")
	require.NoError(t, err)
	joined := strings.Join(problems, "\n")
	require.Contains(t, joined, "session_replication_role")
	require.Contains(t, joined, "COPY")
}

func TestDSQLTokenPerConnectionAndRecycling(t *testing.T) {
	t.Parallel()
	e := dsqlEnv(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	var tokens atomic.Int32
	var clock atomic.Int64
	start := time.Now()
	s := e.dsqlSink("recycle", func(c *Config) {
		c.tokenFunc = func(_ context.Context, pc *pgx.ConnConfig) (string, error) {
			tokens.Add(1)
			return "token-" + pc.User, nil
		}
		c.now = func() time.Time { return start.Add(time.Duration(clock.Load())) }
	})
	r := rel("public.t", "id pk", "v")
	ctx := context.Background()
	pid := func() uint32 { return s.conn.PgConn().PID() }
	first := pid()
	require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{dtx(0x100, ins(r, "1", "a"))}, Position: pos(1)}))
	require.Equal(t, first, pid())
	require.Equal(t, int32(1), tokens.Load())

	clock.Store(int64(51 * time.Minute)) // past the 50-minute default
	require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{dtx(0x200, ins(r, "2", "b"))}, Position: pos(2)}))
	require.NotEqual(t, first, pid(), "a new connection")
	require.Equal(t, int32(2), tokens.Load(), "with a new token")
	require.Equal(t, []string{"2"}, e.rows("SELECT count(*) FROM public.t"))
	e.checkDSQLLog("recycle")
}

func TestDSQLToken(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	require.Equal(t, "us-east-1", dsqlRegion("abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"))
	require.Equal(t, "", dsqlRegion("db.example.com"))

	s := &Sink{cfg: Config{DSQL: DSQLConfig{}.defaults()}}
	for _, tc := range []struct{ user, action string }{{"admin", "Action=DbConnectAdmin"}, {"app", "Action=DbConnect&"}} {
		c, err := pgx.ParseConfig("postgres://" + tc.user + "@abcd.dsql.eu-west-1.on.aws:5432/postgres")
		require.NoError(t, err)
		tok, err := s.dsqlToken(context.Background(), c)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(tok, "abcd.dsql.eu-west-1.on.aws"), tok)
		require.NotContains(t, tok, "https://")
		require.Contains(t, tok, tc.action)
		require.Contains(t, tok, "X-Amz-Credential=AKIDEXAMPLE%2F")
		require.Contains(t, tok, "X-Amz-Expires=900")
	}
	c, err := pgx.ParseConfig("postgres://admin@127.0.0.1:5432/postgres")
	require.NoError(t, err)
	_, err = s.dsqlToken(context.Background(), c)
	require.ErrorContains(t, err, "set the sink's dsql.region")

	// The real token path against the trust-authenticated test server,
	// which ignores the password: a fresh token per connection works.
	e := dsqlEnv(t)
	s2, err := New(context.Background(), Config{Name: "token", DSN: e.dsn, Flavor: FlavorDSQL, DSQL: DSQLConfig{Region: "eu-west-1"}}, nil)
	require.NoError(t, err)
	require.NoError(t, s2.Close(context.Background()))
}

// TestCopyTextRoundTrip: the sink's own COPY encoder (copyRows) and the
// COPY text parser of the DSQL load path agree.
func TestCopyTextRoundTrip(t *testing.T) {
	in := change.Row{change.Text("x\\y\tz\r\n"), change.Null, change.Text("")}
	row, err := copytext.ParseLine(copyRows([]change.Row{in}).Bytes(), 3)
	require.NoError(t, err)
	require.Equal(t, in, row)
}

// failingReader returns r's data, then err instead of EOF.
type failingReader struct {
	r   *strings.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil {
		return n, f.err
	}
	return n, nil
}

func TestDSQLLoadInParts(t *testing.T) {
	t.Parallel()
	e := dsqlEnv(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	e.exec("INSERT INTO public.t SELECT g, 'old' FROM generate_series(100, 106) g")
	s := e.dsqlSink("load", func(c *Config) { c.DSQL.MaxTxRows = 4 }) // parts of 3 rows
	ctx := context.Background()
	var data strings.Builder
	for i := range 10 {
		fmt.Fprintf(&data, "%d\tv%d\n", i, i)
	}
	chunk := &sink.BulkChunk{SnapshotID: "s", ID: "c1", Schema: "public", Table: "t", Columns: []string{"id", "v"}, Truncate: true}

	// The source fails after 7 rows: two parts committed, the chunk not recorded.
	_, err := s.Load(ctx, chunk, &failingReader{r: strings.NewReader(data.String()[:strings.Index(data.String(), "7\t")]), err: fmt.Errorf("source gone")})
	require.ErrorContains(t, err, "source gone")
	require.Equal(t, []string{"6"}, e.rows("SELECT count(*) FROM public.t"), "old rows deleted, two parts of three loaded")
	done, err := s.Loaded(ctx, "s")
	require.NoError(t, err)
	require.Empty(t, done)

	// Loaded again whole (without emptying the table this time): the
	// committed parts are upserted, not doubled.
	chunk.Truncate = false
	n, err := s.Load(ctx, chunk, strings.NewReader(data.String()))
	require.NoError(t, err)
	require.Equal(t, int64(10), n)
	require.Equal(t, []string{"10|10"}, e.rows("SELECT count(*), count(*) FILTER (WHERE v LIKE 'v%') FROM public.t"))
	done, err = s.Loaded(ctx, "s")
	require.NoError(t, err)
	require.True(t, done["c1"])
	stmts := e.checkDSQLLog("load")
	loads := 0
	for _, st := range stmts {
		if strings.HasPrefix(st.SQL, `INSERT INTO "public"."t"`) {
			loads++
		}
	}
	require.Equal(t, 2+4, loads, "parts of at most 3 rows")
}

// TestDSQLResumeKeepsTheMarkPastALargeTransaction: the stored seq lags the
// chunk mark when a transaction before the marked one spanned Partial
// batches (seq moves at the end of an Apply only, and not past an open
// transaction). After a crash the batches that re-deliver that earlier
// transaction are skipped whole, and the empty chunk that ends each of them
// must commit the mark as it was: replacing it with the position in the
// skipped transaction (as it once did) applied the marked transaction's
// committed chunks a second time — one chunk of pgbench_history doubled
// after a kill -9.
func TestDSQLResumeKeepsTheMarkPastALargeTransaction(t *testing.T) {
	t.Parallel()
	e := dsqlEnv(t, histDDL)
	r := rel("public.hist", "id", "v")
	ctx := context.Background()
	open := func() *Sink { return e.dsqlSink("lag", func(c *Config) { c.DSQL.MaxTxRows = 400 }) }
	big := dtx(0x200, inserts(r, 1000, 3500)...)
	part := func(tx sink.Tx, from, to int) sink.Tx { return sink.Tx{Tx: tx.Tx, Changes: tx.Changes[from:to]} }
	batches := []*sink.Batch{
		{Txs: []sink.Tx{part(big, 0, 1000)}, Partial: true, Position: pos(1)},
		{Txs: []sink.Tx{part(big, 1000, 2000)}, Partial: true, Position: pos(1)},
		{Txs: []sink.Tx{part(big, 2000, 2500), dtx(0x300, inserts(r, 5000, 5600)...)}, Position: pos(3)},
	}
	s := open()
	require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{dtx(0x100, inserts(r, 0, 10)...)}, Position: pos(1)}))
	require.NoError(t, s.Apply(ctx, batches[0]))
	require.NoError(t, s.Apply(ctx, batches[1]))
	// The last batch fails in its last chunk: 0x200 is complete and 298
	// changes of 0x300 are applied, but seq is still 1.
	e.exec("ALTER TABLE public.hist ADD CONSTRAINT boom CHECK (id <> 5400)")
	require.ErrorContains(t, s.Apply(ctx, batches[2]), "boom")
	require.NoError(t, s.Close(ctx))
	e.exec("ALTER TABLE public.hist DROP CONSTRAINT boom")
	const mark = "1|0/200|0/300|298"
	require.Equal(t, []string{mark}, e.rows("SELECT seq, applied_lsn, tx_lsn, tx_changes FROM cdcd.checkpoint"))

	s = open()
	p, err := s.Position(ctx)
	require.NoError(t, err)
	require.Equal(t, pos(1), p, "0x200 is read again")
	for _, b := range batches[:2] {
		require.NoError(t, s.Apply(ctx, b))
		require.Equal(t, []string{mark}, e.rows("SELECT seq, applied_lsn, tx_lsn, tx_changes FROM cdcd.checkpoint"),
			"skipping 0x200 keeps the mark in 0x300")
	}
	require.NoError(t, s.Apply(ctx, batches[2]))
	require.Equal(t, []string{"3110|3110"}, e.rows("SELECT count(*), count(DISTINCT id) FROM public.hist"), "every row exactly once")
	require.Equal(t, []string{"3|0/300|0/0|0"}, e.rows("SELECT seq, applied_lsn, tx_lsn, tx_changes FROM cdcd.checkpoint"))
	e.checkDSQLLog("lag")
}
