package capture_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/capture"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// runner runs a capture in the background of a test.
type runner struct {
	c       *capture.Capture
	durable atomic.Uint64
	moved   chan struct{} // signalled (without blocking) when durable moves
	cancel  context.CancelFunc
	done    chan error
}

func testConfig(src *pgtest.Cluster, dir string) capture.Config {
	return capture.Config{
		Source: postgres.Config{
			DSN:            src.DSN("postgres"),
			Create:         true,
			StatusInterval: 200 * time.Millisecond,
		},
		TrailDir:   dir,
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond,
		Logger:     testLogger(),
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("CDCD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startCapture(t testing.TB, cfg capture.Config) *runner {
	t.Helper()
	c, err := capture.New(cfg)
	require.NoError(t, err)
	r := run(c)
	t.Cleanup(func() { r.cancel(); <-r.done })
	return r
}

// run starts c in the background, tracking its durable position.
func run(c *capture.Capture) *runner {
	r := &runner{c: c, moved: make(chan struct{}, 1), done: make(chan error, 1)}
	c.OnDurable = func(l change.LSN) {
		r.durable.Store(uint64(l))
		select {
		case r.moved <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- c.Run(ctx) }()
	return r
}

// waitPast waits until the trail durably holds a transaction ending after lsn.
func (r *runner) waitPast(t testing.TB, lsn change.LSN, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for change.LSN(r.durable.Load()) <= lsn {
		select {
		case <-r.moved:
		case err := <-r.done:
			r.done <- err
			t.Fatalf("capture stopped early: %v", err)
		case <-deadline.C:
			t.Fatalf("trail durable at %s, not past %s after %s", change.LSN(r.durable.Load()), lsn, timeout)
		}
	}
}

func (r *runner) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	require.NoError(t, <-r.done)
	r.done <- nil // for Cleanup
}

// marker commits a logical message and returns its LSN: once the trail's
// durable end LSN is past it, everything committed before it is in the trail.
func marker(t testing.TB, c *pgtest.Cluster) change.LSN { t.Helper(); return c.MarkerT(t) }

func query(c *pgtest.Cluster, sql string, dst ...any) error { return c.QueryRow(sql, dst...) }

// txn is one transaction read back from the trail.
type txn struct {
	begin, commit *change.Tx
	changes       []*change.Change
}

// readTrail reads the whole trail and groups it into transactions, checking
// the framing: BEGIN … COMMIT, matching XIDs, increasing end LSNs.
func readTrail(t testing.TB, dir string) []txn {
	txs, _ := readTrailAll(t, dir)
	return txs
}

// readTrailAll is readTrail that also returns the non-transactional
// messages found between transactions.
func readTrailAll(t testing.TB, dir string) ([]txn, []*change.Change) {
	t.Helper()
	r, err := trail.NewReader(dir, 0, trail.ReaderOptions{})
	require.NoError(t, err)
	defer r.Close()
	var out []txn
	var loose []*change.Change
	var cur *txn
	var lastEnd change.LSN
	for {
		rec, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		switch rec.Type {
		case trail.RecordBegin:
			require.Nil(t, cur, "BEGIN inside a transaction at seq %d", rec.Seq)
			cur = &txn{begin: rec.Tx}
		case trail.RecordChange:
			require.NotNil(t, cur, "change outside a transaction at seq %d", rec.Seq)
			cur.changes = append(cur.changes, rec.Change)
		case trail.RecordMessage:
			if cur != nil {
				cur.changes = append(cur.changes, rec.Change)
			} else {
				require.False(t, rec.Change.Message.Transactional, "transactional message outside a transaction at seq %d", rec.Seq)
				loose = append(loose, rec.Change)
			}
		case trail.RecordCommit:
			require.NotNil(t, cur, "COMMIT outside a transaction at seq %d", rec.Seq)
			require.Equal(t, cur.begin.XID, rec.Tx.XID)
			require.Greater(t, rec.Tx.EndLSN, lastEnd, "end LSNs increase")
			lastEnd = rec.Tx.EndLSN
			cur.commit = rec.Tx
			out = append(out, *cur)
			cur = nil
		}
	}
	require.Nil(t, cur, "the trail ends inside a transaction")
	return out, loose
}

// userChanges drops heartbeat and marker transactions.
func userChanges(txs []txn) []*change.Change {
	var out []*change.Change
	for _, tx := range txs {
		for _, c := range tx.changes {
			if c.Op == change.OpMessage && (c.Message.Prefix == postgres.HeartbeatPrefix || c.Message.Prefix == "test.marker") {
				continue
			}
			out = append(out, c)
		}
	}
	return out
}

func col(c *change.Change, row change.Row, name string) change.Value {
	i := c.Relation.Column(name)
	if i < 0 {
		panic("no column " + name)
	}
	return row[i]
}
