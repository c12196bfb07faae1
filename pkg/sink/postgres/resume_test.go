package postgres

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/sink"
)

// A process killed (kill -9) right after it sent COMMIT leaves that commit
// running on the target: the server finishes it whether or not the client
// is still there to hear the result. A new process that reads the
// checkpoint row before that commit lands resumes from the older position,
// and applies again what the late commit adds. These tests hold such a
// commit back (a deferred trigger waits for an advisory lock the test owns)
// so the window is always open, then let it land.

// holdCommits makes every commit of a transaction that inserts id into
// public.hist wait until release is called (a deferred trigger waiting for
// an advisory lock the returned connection holds).
func holdCommits(e *env, id int) (release func()) {
	e.t.Helper()
	e.exec(`CREATE FUNCTION public.hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NULL; END $$`)
	e.exec(fmt.Sprintf(`CREATE CONSTRAINT TRIGGER hold AFTER INSERT ON public.hist DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW WHEN (NEW.id = %d) EXECUTE FUNCTION public.hold()`, id))
	e.exec("ALTER TABLE public.hist ENABLE ALWAYS TRIGGER hold") // also for session_replication_role = replica
	ctx := context.Background()
	holder, err := pgx.Connect(ctx, e.dsn)
	require.NoError(e.t, err)
	_, err = holder.Exec(ctx, "SELECT pg_advisory_lock(4242)")
	require.NoError(e.t, err)
	e.t.Cleanup(func() { holder.Close(ctx) })
	return func() {
		e.t.Helper()
		_, err := holder.Exec(ctx, "SELECT pg_advisory_unlock(4242)")
		require.NoError(e.t, err)
	}
}

// waitLockWait waits until a session of the test's database waits for a
// lock of type locktype (advisory, transactionid).
func waitLockWait(e *env, locktype string) {
	e.t.Helper()
	q := fmt.Sprintf(`SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = '%s'
AND (database IS NULL OR database = (SELECT oid FROM pg_database WHERE datname = current_database()))`, locktype)
	require.Eventually(e.t, func() bool { return e.rows(q)[0] != "0" }, time.Minute, 5*time.Millisecond,
		"no session waits for a %s lock", locktype)
}

// process is a TCP proxy standing for a cdcd process between a sink and
// the target: kill cuts every connection through it at once, as kill -9
// does, and refuses new ones. (Closing a pgx connection from inside the
// process would not do: pgx then sends a cancel request, which a killed
// process never sends, and the commit in flight would be cancelled.)
type process struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

// startProcess proxies to the target of e; dsn is e's DSN through it.
func startProcess(e *env) (p *process, dsn string) {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(e.t, err)
	p = &process{ln: ln}
	target := "127.0.0.1:" + strconv.Itoa(e.c.Port)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c) }()
			go func() { _, _ = io.Copy(c, u) }()
		}
	}()
	e.t.Cleanup(p.kill)
	return p, strings.Replace(e.dsn, target, ln.Addr().String(), 1)
}

func (p *process) kill() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// goApply runs s.Apply(b) in a goroutine.
func goApply(s *Sink, b *sink.Batch) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.Apply(context.Background(), b) }()
	return done
}

// applyLikeTheWorker applies batches from a freshly opened sink's Position
// on, reopening the sink and starting over after a retriable error as the
// apply worker does (at most tries times). batches returns the batches to
// apply after a position.
func applyLikeTheWorker(t *testing.T, open func() *Sink, batches func(sink.Position) []*sink.Batch, tries int) {
	t.Helper()
	ctx := context.Background()
	for try := 1; ; try++ {
		s := open()
		p, err := s.Position(ctx)
		require.NoError(t, err)
		for _, b := range batches(p) {
			if err = s.Apply(ctx, b); err != nil {
				break
			}
		}
		require.NoError(t, s.Close(ctx))
		if err == nil {
			return
		}
		require.True(t, sink.IsRetriable(err), "a resume error the worker does not retry: %v", err)
		require.Less(t, try, tries, "still failing: %v", err)
	}
}

// TestDSQLLateCommitOfAKilledSession: the process dies while the commit of
// the fourth chunk of a large transaction is in flight; the next one reads
// the mark of the third, and the late commit lands while it applies the
// fourth again. The fourth chunk must not be applied twice.
func TestDSQLLateCommitOfAKilledSession(t *testing.T) {
	t.Parallel()
	e := dsqlEnv(t, histDDL)
	r := rel("public.hist", "id", "v")
	ctx := context.Background()
	open := func() *Sink { return e.dsqlSink("late", func(c *Config) { c.DSQL.MaxTxRows = 1000 }) }
	first := &sink.Batch{Txs: []sink.Tx{dtx(0x100, inserts(r, 0, 10)...)}, Position: pos(1)}
	big := &sink.Batch{Txs: []sink.Tx{dtx(0x200, inserts(r, 10, 6010)...)}, Position: pos(2)}
	proc, dsn := startProcess(e)
	a := e.dsqlSink("late", func(c *Config) { c.DSN, c.DSQL.MaxTxRows = dsn, 1000 })
	require.NoError(t, a.Apply(ctx, first))
	release := holdCommits(e, 3500) // row 3,490 of 0x200: its fourth chunk of 999

	applyingA := goApply(a, big)
	waitLockWait(e, "advisory") // chunk 4 is committing
	proc.kill()
	require.Error(t, <-applyingA)
	require.Equal(t, []string{"1|0/100|0/200|2997|3"}, e.rows("SELECT seq, applied_lsn, tx_lsn, tx_changes, tx_chunk FROM cdcd.checkpoint"),
		"the next process reads the third chunk's mark")

	b := open()
	p, err := b.Position(ctx)
	require.NoError(t, err)
	require.Equal(t, pos(1), p)
	applyingB := goApply(b, big)
	waitLockWait(e, "transactionid") // b's chunk 4 waits for a's checkpoint row
	release()                        // a's chunk 4 commits
	err = <-applyingB
	require.ErrorIs(t, err, errCheckpointMoved, "b's chunk 4 must not commit after a's")
	require.True(t, sink.IsRetriable(err), "the worker resumes from the position: %v", err)
	require.NoError(t, b.Close(ctx))
	applyLikeTheWorker(t, open, func(p sink.Position) []*sink.Batch {
		require.Equal(t, pos(1), p, "a's fourth chunk is in the mark now")
		return []*sink.Batch{big}
	}, 1)
	require.Equal(t, []string{"6010|6010"}, e.rows("SELECT count(*), count(DISTINCT id) FROM public.hist"), "every row exactly once")
	require.Equal(t, []string{"2|0/200|0/0|0"}, e.rows("SELECT seq, applied_lsn, tx_lsn, tx_changes FROM cdcd.checkpoint"))
	e.checkDSQLLog("late")
}

// TestLateCommitOfAKilledSession is the same race on the plain flavor: the
// batch commits late, after the next process read the older position and
// applied the batch again.
func TestLateCommitOfAKilledSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, histDDL)
	r := rel("public.hist", "id", "v")
	ctx := context.Background()
	open := func() *Sink { return e.sink("late") }
	first := batch(1, tx(inserts(r, 0, 10)...))
	second := batch(2, tx(inserts(r, 10, 3010)...))
	proc, dsn := startProcess(e)
	a, err := New(ctx, Config{Name: "late", DSN: dsn}, testLogger(t))
	require.NoError(t, err)
	require.NoError(t, a.Apply(ctx, first))
	release := holdCommits(e, 1000)

	applyingA := goApply(a, second)
	waitLockWait(e, "advisory")
	proc.kill()
	require.Error(t, <-applyingA)

	b := open()
	p, err := b.Position(ctx)
	require.NoError(t, err)
	require.Equal(t, pos(1), p, "the next process reads the older position")
	applyingB := goApply(b, second)
	waitLockWait(e, "transactionid")
	release()
	err = <-applyingB
	require.ErrorIs(t, err, errCheckpointMoved, "b's batch must not commit after a's")
	require.True(t, sink.IsRetriable(err), "the worker resumes from the position: %v", err)
	require.NoError(t, b.Close(ctx))
	applyLikeTheWorker(t, open, func(p sink.Position) []*sink.Batch {
		require.Equal(t, pos(2), p, "a's batch committed")
		return nil
	}, 1)
	require.Equal(t, []string{"3010|3010"}, e.rows("SELECT count(*), count(DISTINCT id) FROM public.hist"), "every row exactly once")
	require.Equal(t, []string{"2"}, e.rows("SELECT seq FROM cdcd.checkpoint"))
}
