package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// fakeSink records batches; it can fail on demand. Fault paths only: real
// sinks are tested against real servers in their packages.
type fakeSink struct {
	mu       sync.Mutex
	batches  []*sink.Batch
	pos      sink.Position
	stores   bool
	failNext error
	opened   int
	open     []sink.Tx         // the Partial transaction in progress
	onApply  func(*sink.Batch) // called with each accepted batch, under mu
}

type storingSink struct{ *fakeSink }

func (s storingSink) Position(context.Context) (sink.Position, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pos, nil
}

func (s *fakeSink) Apply(_ context.Context, b *sink.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failNext; err != nil {
		s.failNext = nil
		s.open = nil
		return err
	}
	s.batches = append(s.batches, b)
	if s.onApply != nil {
		s.onApply(b)
	}
	if !b.Partial {
		s.pos = b.Position
	}
	return nil
}

func (s *fakeSink) Close(context.Context) error { return nil }

func (s *fakeSink) end() change.LSN {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pos.EndLSN
}

func (s *fakeSink) snapshot() []*sink.Batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*sink.Batch(nil), s.batches...)
}

var rel = &change.Relation{OID: 1, Schema: "public", Name: "t", ReplicaIdentity: 'd',
	Columns: []change.Column{{Name: "id", TypeOID: 23, TypeName: "int4", Key: true}}, PrimaryKey: []int{0}}

// writeTrail writes n transactions of k inserts each (ids numbered
// globally) plus, when heartbeat, a heartbeat transaction after each.
func writeTrail(t *testing.T, dir string, n, k int, heartbeat bool) *trail.Writer {
	t.Helper()
	w, err := trail.Open(dir, trail.Options{})
	require.NoError(t, err)
	lsn := change.LSN(0x1000000)
	id := 0
	tx := func(changes ...*change.Change) {
		lsn += 0x100
		x := &change.Tx{XID: uint32(lsn), FinalLSN: lsn, CommitLSN: lsn, EndLSN: lsn + 0x10, CommitTime: time.Now()}
		require.NoError(t, w.Begin(x))
		for _, c := range changes {
			require.NoError(t, w.Change(c))
		}
		require.NoError(t, w.Commit(x))
	}
	for range n {
		var cs []*change.Change
		for range k {
			id++
			cs = append(cs, &change.Change{Op: change.OpInsert, Relation: rel, New: change.Row{change.Text(fmt.Sprint(id))}})
		}
		tx(cs...)
		if heartbeat {
			tx(&change.Change{Op: change.OpMessage, Message: &change.Message{Transactional: true, Prefix: sink.HeartbeatPrefix, Content: []byte("x")}})
		}
	}
	_, err = w.Sync()
	require.NoError(t, err)
	return w
}

// ids flattens the inserted ids the sink received, in order.
func ids(bs []*sink.Batch) []string {
	var out []string
	for _, b := range bs {
		for _, tx := range b.Txs {
			for _, c := range tx.Changes {
				if c.Op == change.OpInsert {
					out = append(out, string(c.New[0].Data))
				}
			}
		}
	}
	return out
}

func runUntil(t *testing.T, w *Worker, done func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	var ended bool
	var early error
	require.Eventually(t, func() bool {
		select {
		case early = <-errc:
			ended = true
			return true
		default:
			return done()
		}
	}, 10*time.Second, 5*time.Millisecond, "the sink did not receive what was expected")
	require.False(t, ended, "worker ended early: %v", early)
	cancel()
	require.NoError(t, <-errc)
}

func want(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint(i + 1)
	}
	return out
}

func TestBatchesWholeTransactionsAndSkipsHeartbeats(t *testing.T) {
	dir := t.TempDir()
	tw := writeTrail(t, dir, 50, 3, true)
	fs := &fakeSink{}
	w, err := New(Config{Name: "x", TrailDir: dir, MaxRows: 10, Durable: tw.Durable},
		func(context.Context) (sink.Sink, error) { return storingSink{fs}, nil })
	require.NoError(t, err)
	runUntil(t, w, func() bool { return len(ids(fs.snapshot())) == 150 && fs.end() == tw.LastEndLSN() })
	bs := fs.snapshot()
	require.Equal(t, want(150), ids(bs))
	for _, b := range bs {
		require.False(t, b.Partial, "3-row transactions fit in 10-row batches")
		require.LessOrEqual(t, b.Rows, 12, "a batch closes at max_rows (one transaction may overshoot)")
		for _, tx := range b.Txs {
			for _, c := range tx.Changes {
				if c.Op == change.OpMessage {
					require.NotEqual(t, sink.HeartbeatPrefix, c.Message.Prefix)
				}
			}
		}
	}
	require.Greater(t, len(bs), 10)
	st := w.Stats()
	require.Equal(t, uint64(150), st.Rows)
	require.Equal(t, uint64(100), st.Transactions, "heartbeat transactions count: they move the position")
}

func TestLargeTransactionIsChunked(t *testing.T) {
	dir := t.TempDir()
	tw := writeTrail(t, dir, 2, 95, false)
	fs := &fakeSink{}
	w, err := New(Config{Name: "x", TrailDir: dir, MaxRows: 20, Durable: tw.Durable},
		func(context.Context) (sink.Sink, error) { return storingSink{fs}, nil })
	require.NoError(t, err)
	runUntil(t, w, func() bool { return fs.end() == tw.LastEndLSN() })
	bs := fs.snapshot()
	require.Equal(t, want(190), ids(bs))
	partial := 0
	for _, b := range bs {
		require.LessOrEqual(t, b.Rows, 20, "memory bounded: no batch above max_rows")
		if b.Partial {
			partial++
		}
	}
	require.GreaterOrEqual(t, partial, 8, "each 95-row transaction goes in chunks")
	require.False(t, bs[len(bs)-1].Partial)
}

func TestCheckpointFileWithoutPositionStore(t *testing.T) {
	dir := t.TempDir()
	tw := writeTrail(t, dir, 10, 2, false)
	fs := &fakeSink{}
	open := func(context.Context) (sink.Sink, error) { return fs, nil }
	w, err := New(Config{Name: "plain", TrailDir: dir, Durable: tw.Durable}, open)
	require.NoError(t, err)
	runUntil(t, w, func() bool { return len(ids(fs.snapshot())) == 20 })

	// A new worker resumes after the checkpoint: nothing re-delivered. The
	// trail is read in order, so once the transaction appended now has
	// arrived, anything re-delivered would have arrived before it.
	appendTx(t, tw, 0x9000000, "21")
	fs2 := &fakeSink{}
	w2, err := New(Config{Name: "plain", TrailDir: dir, Durable: tw.Durable}, func(context.Context) (sink.Sink, error) { return fs2, nil })
	require.NoError(t, err)
	runUntil(t, w2, func() bool { return len(ids(fs2.snapshot())) >= 1 })
	require.Equal(t, []string{"21"}, ids(fs2.snapshot()))
	require.Greater(t, w2.Applied(), w.Applied())
}

// appendTx writes one transaction inserting id at lsn and makes it durable.
func appendTx(t *testing.T, tw *trail.Writer, lsn change.LSN, id string) {
	t.Helper()
	x := &change.Tx{XID: uint32(lsn), FinalLSN: lsn, CommitLSN: lsn, EndLSN: lsn + 0x10, CommitTime: time.Now()}
	require.NoError(t, tw.Begin(x))
	require.NoError(t, tw.Change(&change.Change{Op: change.OpInsert, Relation: rel, New: change.Row{change.Text(id)}}))
	require.NoError(t, tw.Commit(x))
	_, err := tw.Sync()
	require.NoError(t, err)
}

func TestRetriableErrorResumesFromPosition(t *testing.T) {
	dir := t.TempDir()
	tw := writeTrail(t, dir, 20, 1, false)
	fs := &fakeSink{failNext: sink.Retriable(errors.New("connection reset"))}
	opens := 0
	w, err := New(Config{Name: "x", TrailDir: dir, Durable: tw.Durable, MinBackoff: time.Millisecond},
		func(context.Context) (sink.Sink, error) { opens++; return storingSink{fs}, nil })
	require.NoError(t, err)
	runUntil(t, w, func() bool { return fs.end() == tw.LastEndLSN() })
	require.Equal(t, want(20), ids(fs.snapshot()), "no loss, no duplicate after the retry")
	require.Equal(t, 2, opens, "the sink is reopened after a retriable error")
	require.Equal(t, uint64(1), w.Stats().Retries)
}

func TestTerminalErrorStopsTheSink(t *testing.T) {
	dir := t.TempDir()
	tw := writeTrail(t, dir, 3, 1, false)
	fs := &fakeSink{failNext: errors.New("target table public.t does not exist")}
	w, err := New(Config{Name: "x", TrailDir: dir, Durable: tw.Durable},
		func(context.Context) (sink.Sink, error) { return storingSink{fs}, nil })
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = w.Run(ctx)
	require.ErrorContains(t, err, "sink x: target table public.t does not exist")
	require.True(t, w.Stats().Stopped)
	require.Zero(t, w.Applied())
}

func TestReadsOnlyDurable(t *testing.T) {
	dir := t.TempDir()
	tw := writeTrail(t, dir, 5, 1, false)
	// An unsynced transaction must not reach the sink.
	x := &change.Tx{XID: 9, FinalLSN: 0x9000000, CommitLSN: 0x9000000, EndLSN: 0x9000010}
	require.NoError(t, tw.Begin(x))
	require.NoError(t, tw.Change(&change.Change{Op: change.OpInsert, Relation: rel, New: change.Row{change.Text("999")}}))
	require.NoError(t, tw.Commit(x))
	var synced atomic.Bool
	early := make(chan []string, 1) // what the sink got before the Sync, if it got 999
	fs := &fakeSink{onApply: func(b *sink.Batch) {
		if got := ids([]*sink.Batch{b}); !synced.Load() && slices.Contains(got, "999") {
			select {
			case early <- got:
			default:
			}
		}
	}}
	// The reader calls Wake each time it has caught up with the durable
	// position and is about to wait for more.
	waiting := make(chan struct{}, 1)
	wake := func() <-chan struct{} {
		select {
		case waiting <- struct{}{}:
		default:
		}
		return tw.Changed()
	}
	w, err := New(Config{Name: "x", TrailDir: dir, Durable: tw.Durable, Wake: wake},
		func(context.Context) (sink.Sink, error) { return storingSink{fs}, nil })
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	// All durable transactions applied and the reader stopped at the
	// durable position: the unsynced one was there to be read and was not.
	require.Eventually(t, func() bool { return len(ids(fs.snapshot())) >= 5 }, 10*time.Second, 5*time.Millisecond)
	select {
	case <-waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the reader never caught up")
	}
	require.Equal(t, want(5), ids(fs.snapshot()))
	synced.Store(true)
	_, err = tw.Sync()
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(ids(fs.snapshot())) >= 6 }, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-errc)
	require.Equal(t, append(want(5), "999"), ids(fs.snapshot()))
	select {
	case got := <-early:
		t.Fatalf("an unsynced transaction reached the sink: %v", got)
	default:
	}
}

// TestIdleSendsCompleteTransactionsAheadOfAnOpenOne: a speculative reader
// caught up inside the next transaction must not hold back the complete
// ones before it (they would wait MaxDelay).
func TestIdleSendsCompleteTransactionsAheadOfAnOpenOne(t *testing.T) {
	out := make(chan *sink.Batch, 4)
	b := &batcher{cfg: Config{MaxRows: 100, MaxBytes: 1 << 20, MaxDelay: time.Hour}, out: out, ctx: context.Background()}
	ins := func(id int) trail.Record {
		return trail.Record{Type: trail.RecordChange, Change: &change.Change{Op: change.OpInsert, Relation: rel, New: change.Row{change.Text(fmt.Sprint(id))}}}
	}
	tx1 := &change.Tx{XID: 1, FinalLSN: 0xf0, EndLSN: 0x100}
	tx2 := &change.Tx{XID: 2, FinalLSN: 0x1f0, EndLSN: 0x200}
	for _, r := range []trail.Record{
		{Type: trail.RecordBegin, Seq: 1, Tx: tx1}, ins(1), {Type: trail.RecordCommit, Seq: 3, Tx: tx1},
		{Type: trail.RecordBegin, Seq: 4, Tx: tx2}, ins(2),
	} {
		require.NoError(t, b.add(r))
	}
	require.Empty(t, out)
	b.idle()
	require.Len(t, out, 1)
	first := <-out
	require.False(t, first.Partial)
	require.Len(t, first.Txs, 1)
	require.Equal(t, tx1, first.Txs[0].Tx)
	require.Equal(t, uint64(3), first.Position.Seq)

	require.NoError(t, b.add(trail.Record{Type: trail.RecordCommit, Seq: 6, Tx: tx2}))
	b.idle()
	second := <-out
	require.Len(t, second.Txs, 1)
	require.Equal(t, tx2, second.Txs[0].Tx)
	require.Len(t, second.Txs[0].Changes, 1, "the open transaction kept its change")
	require.Equal(t, sink.Position{Seq: 6, EndLSN: 0x200}, second.Position)
}

// TestResumeFromAnotherTrail: a sink whose position comes from a lost trail
// (its seq below a new trail numbered from FirstSeq, its end LSN inside the
// new trail's range) reads the new trail from its start and skips what it
// applied; a position whose transactions were purged from this trail is
// still refused.
func TestResumeFromAnotherTrail(t *testing.T) {
	dir := t.TempDir()
	tw, err := trail.Open(dir, trail.Options{FirstSeq: 1 << 40})
	require.NoError(t, err)
	for i := 1; i <= 10; i++ {
		appendTx(t, tw, change.LSN(0x1000*i), fmt.Sprint(i))
	}
	// The old trail's sink applied through transaction 4 (end 0x4010).
	fs := &fakeSink{pos: sink.Position{Seq: 12345, EndLSN: 0x4010}}
	w, err := New(Config{Name: "x", TrailDir: dir, Durable: tw.Durable},
		func(context.Context) (sink.Sink, error) { return storingSink{fs}, nil })
	require.NoError(t, err)
	runUntil(t, w, func() bool { return fs.end() == tw.LastEndLSN() })
	require.Equal(t, []string{"5", "6", "7", "8", "9", "10"}, ids(fs.snapshot()), "nothing applied twice, nothing lost")
	require.Greater(t, fs.pos.Seq, uint64(1<<40), "the position is now in the new trail")
	require.NoError(t, tw.Close())

}

// TestPurgedPositionIsRefused: a sink whose next transactions were purged
// from the trail (the oldest segment starts past its end LSN) stops with
// trail.ErrPurged rather than resuming by end LSN.
func TestPurgedPositionIsRefused(t *testing.T) {
	dir := t.TempDir()
	tw, err := trail.Open(dir, trail.Options{SegmentBytes: 4096})
	require.NoError(t, err)
	for i := 1; i <= 200; i++ {
		appendTx(t, tw, change.LSN(0x1000*i), fmt.Sprint(i))
	}
	removed, err := tw.Purge(tw.NextSeq() / 2)
	require.NoError(t, err)
	require.Positive(t, removed)
	fs := &fakeSink{pos: sink.Position{Seq: 3, EndLSN: 0x1010}}
	w, err := New(Config{Name: "x", TrailDir: dir, Durable: tw.Durable},
		func(context.Context) (sink.Sink, error) { return storingSink{fs}, nil })
	require.NoError(t, err)
	err = w.Run(context.Background())
	require.ErrorIs(t, err, trail.ErrPurged)
	require.Empty(t, fs.snapshot())
}

// asyncSink is a storingSink whose commits are durable only up to flushed,
// which the test moves (a target whose WAL flush lags its commits).
type asyncSink struct {
	storingSink
	flushed *atomic.Uint64 // durable up to this Seq
	refresh *atomic.Int64  // RefreshDurable calls
}

func (s asyncSink) Durable() sink.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.flushed.Load(); f < s.pos.Seq {
		return sink.Position{Seq: f}
	}
	return s.pos
}

func (s asyncSink) RefreshDurable(context.Context) (sink.Position, error) {
	s.refresh.Add(1)
	return s.Durable(), nil
}

// TestAsyncCommitReportsOnlyDurable: Applied (the trail purge's and
// `capture.ack: applied`'s limit) and Stats.Position follow what the sink
// calls durable, not what it committed; once the target flushes, the
// worker learns it by asking on its own, with no new batch to tell.
func TestAsyncCommitReportsOnlyDurable(t *testing.T) {
	dir := t.TempDir()
	tw := writeTrail(t, dir, 20, 2, false)
	fs := &fakeSink{}
	var flushed atomic.Uint64
	var refresh atomic.Int64
	w, err := New(Config{Name: "x", TrailDir: dir, MaxRows: 10, Durable: tw.Durable},
		func(context.Context) (sink.Sink, error) {
			return asyncSink{storingSink{fs}, &flushed, &refresh}, nil
		})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	require.Eventually(t, func() bool { return w.Stats().Committed.EndLSN == tw.LastEndLSN() }, 10*time.Second, 5*time.Millisecond)
	last := w.Stats().Committed.Seq
	require.Greater(t, last, uint64(5))
	before := refresh.Load()
	require.Eventually(t, func() bool { return refresh.Load() > before+2 }, 10*time.Second, 5*time.Millisecond,
		"while a commit is pending the worker asks the sink")
	require.Equal(t, uint64(0), w.Applied(), "nothing is flushed: nothing is applied durably")
	require.Equal(t, sink.Position{}, w.Stats().Position)

	flushed.Store(5)
	require.Eventually(t, func() bool { return w.Applied() == 5 }, 10*time.Second, 5*time.Millisecond)
	flushed.Store(last)
	require.Eventually(t, func() bool { return w.Stats().Position.EndLSN == tw.LastEndLSN() }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, last, w.Applied())
	settled := refresh.Load()
	require.Never(t, func() bool { return refresh.Load() > settled+1 }, 200*time.Millisecond, 10*time.Millisecond,
		"no polling once everything committed is durable")
	cancel()
	require.NoError(t, <-errc)
}

// addTx feeds b a one-row transaction: BEGIN at seq, the insert of id,
// COMMIT at seq+2, ending at LSN 0x100 × id.
func addTx(t *testing.T, b *batcher, seq uint64, id int) {
	t.Helper()
	x := &change.Tx{XID: uint32(id), FinalLSN: change.LSN(0x100*id - 0x10), EndLSN: change.LSN(0x100 * id)}
	for _, r := range []trail.Record{
		{Type: trail.RecordBegin, Seq: seq, Tx: x},
		{Type: trail.RecordChange, Change: &change.Change{Op: change.OpInsert, Relation: rel, New: change.Row{change.Text(fmt.Sprint(id))}}},
		{Type: trail.RecordCommit, Seq: seq + 2, Tx: x},
	} {
		require.NoError(t, b.add(r))
	}
}

// TestIdleHoldsABatchForTheSinksMinDelay: for a sink.BatchPacer a caught-up
// reader leaves a batch younger than the sink's delay open, so later
// transactions join it; rows still close it, and once old enough idle sends it.
func TestIdleHoldsABatchForTheSinksMinDelay(t *testing.T) {
	out := make(chan *sink.Batch, 4)
	b := &batcher{cfg: Config{MaxRows: 3, MaxBytes: 1 << 20, MaxDelay: time.Hour}, out: out, ctx: context.Background(),
		minDelay: time.Hour}
	tx := func(seq uint64, id int) {
		addTx(t, b, seq, id)
		b.idle()
	}
	tx(1, 1)
	tx(4, 2)
	require.Empty(t, out, "a batch younger than the sink's delay stays open when the reader catches up")
	tx(7, 3)
	require.Len(t, out, 1, "max_rows still closes it")
	require.Len(t, (<-out).Txs, 3)

	tx(10, 4)
	require.Empty(t, out)
	b.first = time.Now().Add(-time.Hour) // the batch is now as old as the delay
	b.idle()
	require.Len(t, out, 1)
	last := <-out
	require.Len(t, last.Txs, 1)
	require.Equal(t, sink.Position{Seq: 12, EndLSN: 0x400}, last.Position)
}

type pacingSink struct {
	storingSink
	delay time.Duration
}

func (s pacingSink) MinBatchDelay() time.Duration { return s.delay }

// TestBatchPacerDelayIsCappedByMaxDelay: the worker takes the delay from the
// sink it opened, at most MaxDelay: an hour-long delay still applies the last
// transaction within MaxDelay of its arrival.
func TestBatchPacerDelayIsCappedByMaxDelay(t *testing.T) {
	dir := t.TempDir()
	tw := writeTrail(t, dir, 5, 2, false)
	fs := &fakeSink{}
	w, err := New(Config{Name: "x", TrailDir: dir, MaxDelay: 50 * time.Millisecond, Durable: tw.Durable},
		func(context.Context) (sink.Sink, error) { return pacingSink{storingSink{fs}, time.Hour}, nil })
	require.NoError(t, err)
	runUntil(t, w, func() bool { return fs.end() == tw.LastEndLSN() })
	require.Equal(t, want(10), ids(fs.snapshot()))
}

// TestIdleGrowsTheBatchWhileTheApplierIsBehind: while a batch waits in the
// queue, a caught-up reader keeps adding transactions to the next one
// instead of queueing a batch per catch-up; the first commit read once the
// queue has emptied sends it, and so does idle with the queue empty.
func TestIdleGrowsTheBatchWhileTheApplierIsBehind(t *testing.T) {
	out := make(chan *sink.Batch, 2)
	b := &batcher{cfg: Config{MaxRows: 100, MaxBytes: 1 << 20, MaxDelay: time.Hour}, out: out, ctx: context.Background()}
	seq := uint64(1)
	tx := func(id int, idle bool) {
		addTx(t, b, seq, id)
		seq += 3
		if idle {
			b.idle()
		}
	}
	tx(1, true)
	require.Len(t, out, 1, "an empty queue: idle sends at once")
	for id := 2; id <= 5; id++ {
		tx(id, true)
	}
	require.Len(t, out, 1, "the applier has not taken the first batch: the next one grows")
	require.Len(t, (<-out).Txs, 1)
	tx(6, false)
	require.Len(t, out, 1, "the first commit read once the queue is empty sends the grown batch")
	second := <-out
	require.Len(t, second.Txs, 5)
	require.Equal(t, sink.Position{Seq: 18, EndLSN: 0x600}, second.Position)

	tx(7, false)
	require.Empty(t, out, "not due: a commit alone does not close the batch")
	b.idle()
	require.Len(t, (<-out).Txs, 1)
}
