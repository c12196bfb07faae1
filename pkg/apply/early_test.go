package apply

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// earlyRecords is a transaction forwarded before its commit, as capture
// writes it: a BEGIN without FinalLSN, n inserts from id, a COMMIT with it.
func earlyRecords(seq uint64, final change.LSN, id, n int) []trail.Record {
	recs := []trail.Record{{Type: trail.RecordBegin, Seq: seq, Tx: &change.Tx{XID: uint32(final)}}}
	for i := range n {
		seq++
		recs = append(recs, trail.Record{Type: trail.RecordChange, Seq: seq,
			Change: &change.Change{Op: change.OpInsert, Relation: rel, New: change.Row{change.Text(fmt.Sprint(id + i))}}})
	}
	seq++
	return append(recs, trail.Record{Type: trail.RecordCommit, Seq: seq,
		Tx: &change.Tx{XID: uint32(final), FinalLSN: final, CommitLSN: final, EndLSN: final + 0x10, CommitTime: time.Now()}})
}

func drainBatches(out chan *sink.Batch) []*sink.Batch {
	var bs []*sink.Batch
	for {
		select {
		case b := <-out:
			bs = append(bs, b)
		default:
			return bs
		}
	}
}

// TestEarlyTransactionChunked: a forwarded transaction larger than a batch
// goes in Partial chunks like any other, its last batch carrying the
// COMMIT's transaction and position; the complete transactions batched
// before it are not folded into its first chunk (a hold decided at its
// COMMIT must find them committed).
func TestEarlyTransactionChunked(t *testing.T) {
	out := make(chan *sink.Batch, 16)
	b := &batcher{cfg: Config{MaxRows: 3, MaxBytes: 1 << 20, MaxDelay: time.Hour}, out: out, ctx: context.Background()}
	addTx(t, b, 100, 100) // an ordinary one first (seq 100-102)
	for _, r := range earlyRecords(103, 0x5000, 1, 7) {
		require.NoError(t, b.add(r))
	}
	bs := drainBatches(out) // the applier took the chunks
	b.idle()
	bs = append(bs, drainBatches(out)...)
	require.Len(t, bs, 4)
	require.False(t, bs[0].Partial, "the complete transaction before it is committed on its own")
	require.Equal(t, []string{"100"}, ids(bs[:1]))
	require.True(t, bs[1].Partial)
	require.True(t, bs[2].Partial)
	require.False(t, bs[3].Partial)
	require.Equal(t, change.LSN(0x5000), bs[3].Txs[0].Tx.FinalLSN)
	require.Equal(t, sink.Position{Seq: 111, EndLSN: 0x5010}, bs[3].Position)
}

// TestEarlyTransactionSkipDecidedAtCommit: resuming from another trail
// (skipBelow), a forwarded transaction is kept whole — no Partial chunk —
// until its COMMIT says where it commits: below skipBelow it was applied
// from the old trail and is dropped, at or past it it is applied. An
// ordinary BEGIN of FinalLSN 0 would otherwise have been skipped.
func TestEarlyTransactionSkipDecidedAtCommit(t *testing.T) {
	out := make(chan *sink.Batch, 16)
	b := &batcher{cfg: Config{MaxRows: 3, MaxBytes: 1 << 20, MaxDelay: time.Hour}, out: out, ctx: context.Background(), skipBelow: 0x6000}
	for _, r := range earlyRecords(1, 0x5000, 1, 7) { // applied before
		require.NoError(t, b.add(r))
	}
	b.idle()
	require.Empty(t, drainBatches(out), "nothing of a transaction committed below skipBelow")
	for _, r := range earlyRecords(10, 0x7000, 100, 7) {
		require.NoError(t, b.add(r))
	}
	b.idle()
	bs := drainBatches(out)
	require.Len(t, bs, 1, "whole: where it commits was not known before its COMMIT")
	require.False(t, bs[0].Partial)
	require.Equal(t, want(106)[99:], ids(bs))
	require.Equal(t, sink.Position{Seq: 18, EndLSN: 0x7010}, bs[0].Position)

	// A forwarded one whose first change is past skipBelow commits past it
	// too: chunked at once.
	b.skipBelow = 0x6000
	recs := earlyRecords(30, 0x9000, 300, 7)
	for _, r := range recs[1:8] {
		r.Change.LSN = 0x8000
	}
	for _, r := range recs {
		require.NoError(t, b.add(r))
	}
	bs = drainBatches(out)
	b.idle()
	bs = append(bs, drainBatches(out)...)
	require.Len(t, bs, 3)
	require.True(t, bs[0].Partial)
	require.Zero(t, b.skipBelow, "cleared at the first commit past it")

	// Once the skip no longer applies (a new session), chunks again.
	b.skipBelow = 0
	for _, r := range earlyRecords(19, 0x8000, 200, 7) {
		require.NoError(t, b.add(r))
	}
	bs = drainBatches(out)
	b.idle()
	require.Len(t, append(bs, drainBatches(out)...), 3)
}

// TestEarlyTransactionHeldAtCommit: a hold stops before a forwarded
// transaction that commits at or past its LSN, decided at its COMMIT (its
// BEGIN had no LSN to compare; its chunks so far wait uncommitted in the
// target transaction), and lets one committing before it pass.
func TestEarlyTransactionHeldAtCommit(t *testing.T) {
	dir := t.TempDir()
	tw, err := trail.Open(dir, trail.Options{})
	require.NoError(t, err)
	write := func(recs []trail.Record) {
		for _, r := range recs {
			switch r.Type {
			case trail.RecordBegin:
				require.NoError(t, tw.Begin(r.Tx))
			case trail.RecordChange:
				require.NoError(t, tw.Change(r.Change))
			case trail.RecordCommit:
				require.NoError(t, tw.Commit(r.Tx))
			}
		}
		_, err := tw.Sync()
		require.NoError(t, err)
	}
	write(earlyRecords(1, 0x5000, 1, 5))
	write(earlyRecords(0, 0x6000, 6, 5))
	fs := &fakeSink{}
	w, err := New(Config{Name: "x", TrailDir: dir, Durable: tw.Durable, MaxRows: 2},
		func(context.Context) (sink.Sink, error) { return storingSink{fs}, nil })
	require.NoError(t, err)
	h := w.Hold(0x5800, 0)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-errc) }()

	waitReached(t, h)
	require.Equal(t, change.LSN(0x5010), h.Position().EndLSN, "the first, committed before the hold")
	require.Equal(t, change.LSN(0x5010), fs.end(), "the second's chunks may be in its open target transaction, never committed")
	w.ReleaseHold(h)
	require.Eventually(t, func() bool { return fs.end() == 0x6010 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, want(10), ids(fs.snapshot()))
}

// TestCaptureRollbackRestartsQuietly: a speculative reader inside a
// forwarded transaction that capture withdraws (trail rollback) starts its
// session over at once — a new sink session, no retry counted, no error
// reported — and applies what comes next.
func TestCaptureRollbackRestartsQuietly(t *testing.T) {
	dir := t.TempDir()
	tw, err := trail.Open(dir, trail.Options{})
	require.NoError(t, err)
	appendTx(t, tw, 0x1000, "1")
	require.NoError(t, tw.Begin(&change.Tx{XID: 77}))
	for i := range 5 {
		require.NoError(t, tw.Change(&change.Change{Op: change.OpInsert, Relation: rel, New: change.Row{change.Text(fmt.Sprint(100 + i))}}))
	}
	_, err = tw.Flush() // on disk, not durable
	require.NoError(t, err)

	fs := &fakeSink{}
	var opens atomic.Int32
	w, err := New(Config{Name: "x", TrailDir: dir, Durable: tw.Durable, Speculate: tw.Generation, MaxRows: 2, MinBackoff: time.Hour},
		func(context.Context) (sink.Sink, error) { opens.Add(1); return storingSink{fs}, nil })
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-errc) }()

	partial := func() bool {
		for _, id := range ids(fs.snapshot()) {
			if id == "100" {
				return true
			}
		}
		return false
	}
	require.Eventually(t, partial, 10*time.Second, 5*time.Millisecond, "a chunk of the open transaction was applied")
	require.NoError(t, tw.Rollback())
	appendTx(t, tw, 0x2000, "2")
	require.Eventually(t, func() bool { return fs.end() == 0x2010 }, 10*time.Second, 5*time.Millisecond,
		"applied after the rollback, without the hour-long backoff")
	st := w.Stats()
	require.Zero(t, st.Retries)
	require.Empty(t, st.LastError)
	require.Equal(t, int32(2), opens.Load(), "a new sink session")
}
