package postgres

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// TestAsyncCommitDurableLagsUntilFlush: with the target's WAL writer stopped
// (SIGSTOP) nothing flushes an asynchronous commit, so the sink must keep
// reporting the older durable position although the batch is committed and
// visible — on Apply, on RefreshDurable and on a reopened sink's Position —
// until a synchronous commit on another connection flushes the WAL past it.
// A sink that reported the commit position would fail here.
func TestAsyncCommitDurableLagsUntilFlush(t *testing.T) {
	// Its own cluster: other tests' synchronous commits would flush the WAL.
	c := pgtest.StartT(t, pgtest.Options{Name: "asyncpg", Conf: map[string]string{
		"autovacuum": "off", "checkpoint_timeout": "1h",
	}})
	ctx := context.Background()
	c.ExecT(t, "postgres", appDDL)
	e := &env{t: t, c: c, db: "postgres", dsn: c.DSN("postgres")}
	s := e.sink("async")
	require.True(t, s.async, "asynchronous commit is the default on a plain PostgreSQL target")
	r := appRel()

	apply(t, s, 1, ins(r, "1", "a", "1"))
	waitDurable(t, s, pos(1)) // the WAL writer is running: it flushes soon

	walWriter := func(sig syscall.Signal) {
		t.Helper()
		var pid int
		require.NoError(t, c.QueryRow(`SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'`, &pid))
		require.NoError(t, syscall.Kill(pid, sig))
	}
	walWriter(syscall.SIGSTOP)
	t.Cleanup(func() { walWriter(syscall.SIGCONT) })

	apply(t, s, 2, ins(r, "2", "b", "2"))
	require.Equal(t, []string{"1|a|1", "2|b|2"}, e.rows("SELECT * FROM app.t ORDER BY id"), "committed and visible")
	require.Equal(t, pos(1), s.Durable(), "not flushed: the older position is the durable one")
	apply(t, s, 3, ins(r, "3", "c", "3"))
	d, err := s.RefreshDurable(ctx)
	require.NoError(t, err)
	require.Equal(t, pos(1), d, "still not flushed")

	// A reopened sink resumes from the committed row but knows it durable
	// only after a flush.
	s2 := e.sink("async")
	p, err := s2.Position(ctx)
	require.NoError(t, err)
	require.Equal(t, pos(3), p)
	require.Equal(t, sink.Position{}, s2.Durable())

	// A synchronous commit flushes the WAL up to its own commit record,
	// past both.
	c.ExecT(t, "postgres", `CREATE TABLE flush_me (id int)`)
	d, err = s.RefreshDurable(ctx)
	require.NoError(t, err)
	require.Equal(t, pos(3), d)
	d, err = s2.RefreshDurable(ctx)
	require.NoError(t, err)
	require.Equal(t, pos(3), d)

	// With async_commit off, every commit flushes itself: durable at once.
	syncSink, err := New(ctx, Config{Name: "sync", DSN: e.dsn, SyncCommit: true}, testLogger(t))
	require.NoError(t, err)
	t.Cleanup(func() { syncSink.Close(ctx) })
	require.False(t, syncSink.async)
	apply(t, syncSink, 7, ins(r, "7", "g", "7"))
	require.Equal(t, pos(7), syncSink.Durable())
}

// waitDurable polls RefreshDurable until it reports want.
func waitDurable(t *testing.T, s *Sink, want sink.Position) {
	t.Helper()
	require.Eventually(t, func() bool {
		d, err := s.RefreshDurable(context.Background())
		require.NoError(t, err)
		return d == want
	}, time.Minute, 10*time.Millisecond)
}
