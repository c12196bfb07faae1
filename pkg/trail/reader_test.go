package trail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// TestFollowLiveWriter runs a writer (group commit every few transactions,
// frequent rollovers) against two following readers: one bounded by Durable,
// one unbounded. With rollbacks, only the bounded reader is defined.
func TestFollowLiveWriter(t *testing.T) {
	t.Run("with rollbacks", func(t *testing.T) { testFollowLiveWriter(t, true) })
	t.Run("without rollbacks", func(t *testing.T) { testFollowLiveWriter(t, false) })
}

func testFollowLiveWriter(t *testing.T, rollbacks bool) {
	const txCount = 600
	dir := t.TempDir()
	w := openW(t, dir, Options{SegmentBytes: 16 << 10, BufferBytes: 512})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	follow := func(limit func() Position) ([]Record, error) {
		r, err := NewReader(dir, 0, ReaderOptions{Follow: true, Limit: limit, PollInterval: time.Millisecond})
		if err != nil {
			return nil, err
		}
		defer r.Close()
		var recs []Record
		for {
			rec, err := r.Next(ctx)
			if err != nil {
				return recs, err
			}
			recs = append(recs, rec)
			if rec.Type == RecordCommit && rec.Tx.XID == txn(txCount-1).XID {
				return recs, nil
			}
		}
	}
	// followSpec runs ahead of the durable position like an in-process
	// apply worker; on ErrRolledBack it drops what it read since its last
	// COMMIT and reopens after it.
	rolledBack := 0
	sawDoomed := make(chan uint32, 16) // XIDs of rolled-back-to-be BEGINs read ahead
	followSpec := func() ([]Record, error) {
		var recs []Record
		var from uint64
		for {
			r, err := NewReader(dir, from, ReaderOptions{Follow: true, Limit: w.Durable, Speculate: w.Generation, PollInterval: time.Millisecond})
			if err != nil {
				return nil, err
			}
			for {
				rec, err := r.Next(ctx)
				if errors.Is(err, ErrRolledBack) {
					rolledBack++
					for len(recs) > 0 && recs[len(recs)-1].Type != RecordCommit {
						recs = recs[:len(recs)-1]
					}
					from = 0
					if len(recs) > 0 {
						from = recs[len(recs)-1].Seq + 1
					}
					r.Close()
					break
				}
				if err != nil {
					r.Close()
					return recs, err
				}
				if rec.Type == RecordCommit && rec.Seq >= w.Durable().Seq {
					r.Close()
					return recs, fmt.Errorf("COMMIT seq %d returned before it was durable (durable %+v)", rec.Seq, w.Durable())
				}
				if rec.Type == RecordBegin && rec.Tx.XID < 1000 {
					select {
					case sawDoomed <- rec.Tx.XID:
					default:
					}
				}
				recs = append(recs, rec)
				if rec.Type == RecordCommit && rec.Tx.XID == txn(txCount-1).XID {
					r.Close()
					return recs, nil
				}
			}
		}
	}
	var bounded, unbounded, speculative []Record
	var g errgroup.Group
	g.Go(func() (err error) { bounded, err = follow(w.Durable); return err })
	g.Go(func() (err error) { speculative, err = followSpec(); return err })
	if !rollbacks {
		g.Go(func() (err error) { unbounded, err = follow(nil); return err })
	}
	g.Go(func() error {
		users, orders := usersRel(), ordersRel()
		for n := range txCount {
			rel := users
			if n%2 == 0 {
				rel = orders
			}
			if rollbacks && n%50 == 7 { // the source disconnects mid-transaction
				if err := w.Begin(txn(-n)); err != nil {
					return err
				}
				if err := w.Change(insert(users, -n)); err != nil {
					return err
				}
				if _, err := w.Sync(); err != nil {
					return err
				}
				// Roll back only once the speculative reader has read
				// into the doomed transaction, so that every rollback
				// exercises its ErrRolledBack path.
				for x := uint32(0); x != txn(-n).XID; {
					select {
					case x = <-sawDoomed:
					case <-ctx.Done():
						return fmt.Errorf("speculative reader never read transaction %d: %w", txn(-n).XID, ctx.Err())
					}
				}
				if err := w.Rollback(); err != nil {
					return err
				}
			}
			tx := txn(n)
			if err := w.Begin(tx); err != nil {
				return err
			}
			for i := range 1 + n%5 {
				if err := w.Change(insert(rel, n*1000+i)); err != nil {
					return err
				}
			}
			if err := w.Commit(tx); err != nil {
				return err
			}
			if n%4 == 0 {
				if _, err := w.Sync(); err != nil {
					return err
				}
			}
		}
		_, err := w.Sync()
		return err
	})
	require.NoError(t, g.Wait())
	require.NoError(t, w.Close())

	all := readAll(t, dir, 0, ReaderOptions{})
	require.Equal(t, all[:len(bounded)], bounded)
	requireContiguous(t, bounded, 1)
	txs := commits(bounded)
	require.Len(t, txs, txCount)
	for n, tx := range txs {
		require.Equal(t, txn(n), tx)
	}
	for _, r := range bounded {
		if r.Type == RecordBegin {
			require.GreaterOrEqual(t, r.Tx.XID, uint32(1000), "a rolled-back transaction was read")
		}
	}
	if !rollbacks {
		require.Equal(t, bounded, unbounded)
	}
	require.Equal(t, schemaless(bounded), schemaless(speculative), "the speculative reader, after its restarts, read what the durable one did")
	if rollbacks {
		require.Equal(t, txCount/50, rolledBack, "one restart per rollback")
	}
	segs, err := Segments(dir)
	require.NoError(t, err)
	require.Greater(t, len(segs), 3, "the readers crossed segments")
}

// schemaless drops SCHEMA records, which a reader restarted mid-segment
// sees again.
func schemaless(recs []Record) []Record {
	var out []Record
	for _, r := range recs {
		if r.Type != RecordSchema {
			out = append(out, r)
		}
	}
	return out
}

// TestSpeculateReadsAheadButNeverACommit: a speculative reader sees the
// open transaction's flushed records, but its COMMIT only once durable.
func TestSpeculateReadsAheadButNeverACommit(t *testing.T) {
	dir := t.TempDir()
	w := openW(t, dir, Options{})
	defer w.Close()
	ctx := context.Background()
	r, err := NewReader(dir, 0, ReaderOptions{Limit: w.Durable, Speculate: w.Generation})
	require.NoError(t, err)
	defer r.Close()

	tx := txn(1)
	require.NoError(t, w.Begin(tx))
	for i := range 3 {
		require.NoError(t, w.Change(insert(usersRel(), i)))
	}
	_, err = r.Next(ctx)
	require.ErrorIs(t, err, io.EOF, "buffered, not yet in the file")
	_, err = w.Sync() // inside the transaction: in the file, not durable
	require.NoError(t, err)
	var types []RecordType
	for {
		rec, err := r.Next(ctx)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		types = append(types, rec.Type)
	}
	require.Equal(t, []RecordType{RecordBegin, RecordSchema, RecordChange, RecordChange, RecordChange}, types)

	require.NoError(t, w.Commit(tx))
	m, err := w.Flush()
	require.NoError(t, err)
	_, err = r.Next(ctx)
	require.ErrorIs(t, err, io.EOF, "the COMMIT is in the file but not durable")
	_, err = w.SyncFlushed(m)
	require.NoError(t, err)
	rec, err := r.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, RecordCommit, rec.Type)
	require.Equal(t, tx, rec.Tx)
}

// TestSpeculateSeesRollback: records read ahead and then rolled back make
// the reader fail with ErrRolledBack, even when the rewritten trail has a
// durable COMMIT at the same place.
func TestSpeculateSeesRollback(t *testing.T) {
	for _, rewrite := range []bool{false, true} {
		t.Run(fmt.Sprintf("rewrite=%v", rewrite), func(t *testing.T) {
			dir := t.TempDir()
			w := openW(t, dir, Options{})
			defer w.Close()
			ctx := context.Background()
			r, err := NewReader(dir, 0, ReaderOptions{Limit: w.Durable, Speculate: w.Generation})
			require.NoError(t, err)
			defer r.Close()

			require.NoError(t, w.Begin(txn(1)))
			require.NoError(t, w.Change(insert(usersRel(), 1)))
			_, err = w.Sync()
			require.NoError(t, err)
			for range 3 { // SCHEMA, BEGIN, CHANGE
				_, err := r.Next(ctx)
				require.NoError(t, err)
			}
			require.NoError(t, w.Rollback())
			if rewrite {
				writeTx(t, w, 2, 1, usersRel())
				_, err = w.Sync()
				require.NoError(t, err)
			}
			_, err = r.Next(ctx)
			require.ErrorIs(t, err, ErrRolledBack)
		})
	}
}

func TestLimitHidesUnsyncedRecords(t *testing.T) {
	dir := t.TempDir()
	w := openW(t, dir, Options{})
	defer w.Close()
	r, err := NewReader(dir, 0, ReaderOptions{Limit: w.Durable})
	require.NoError(t, err)
	defer r.Close()
	ctx := context.Background()

	first := writeTx(t, w, 1, 2, usersRel())
	_, err = r.Next(ctx)
	require.ErrorIs(t, err, io.EOF, "committed but not synced")

	_, err = w.Sync()
	require.NoError(t, err)
	var got []Record
	for {
		rec, err := r.Next(ctx)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		got = append(got, rec)
	}
	require.Equal(t, []*change.Tx{first}, commits(got))

	// An open transaction stays hidden even after a Sync flushed it.
	require.NoError(t, w.Begin(txn(2)))
	require.NoError(t, w.Change(insert(usersRel(), 9)))
	_, err = w.Sync()
	require.NoError(t, err)
	_, err = r.Next(ctx)
	require.ErrorIs(t, err, io.EOF)
	// The unbounded reader does see the flushed records.
	require.Len(t, readAll(t, dir, 0, ReaderOptions{}), len(got)+2)
	require.NoError(t, w.Rollback())
}

func TestFollowFromEmptyDirectory(t *testing.T) {
	dir := t.TempDir()
	waiting := make(chan struct{}, 1)
	r, err := NewReader(dir, 0, ReaderOptions{Follow: true, PollInterval: time.Millisecond,
		Idle: func() {
			select {
			case waiting <- struct{}{}:
			default:
			}
		}})
	require.NoError(t, err)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	done := make(chan Record, 1)
	go func() {
		rec, err := r.Next(ctx)
		if err == nil {
			done <- rec
		}
		close(done)
	}()
	<-waiting // the reader found no segment and waits
	w := openW(t, dir, Options{})
	defer w.Close()
	require.NoError(t, w.Schema(usersRel()))
	_, err = w.Sync()
	require.NoError(t, err)
	rec, ok := <-done
	require.True(t, ok)
	require.Equal(t, RecordSchema, rec.Type)
}

func TestNextHonoursContext(t *testing.T) {
	dir := t.TempDir()
	w := openW(t, dir, Options{})
	defer w.Close()
	r, err := NewReader(dir, 0, ReaderOptions{Follow: true})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err = r.Next(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, r.Close())
	_, err = r.Next(context.Background())
	require.ErrorIs(t, err, ErrClosed)
}

func TestReaderStartsMidSegment(t *testing.T) {
	dir := t.TempDir()
	txs := committedTrail(t, dir, 5)
	all := readAll(t, dir, 0, ReaderOptions{})
	for from := uint64(1); from <= uint64(len(all)); from++ {
		recs := readAll(t, dir, from, ReaderOptions{})
		require.Equal(t, all[from-1:], recs, "from %d", from)
	}
	require.Empty(t, readAll(t, dir, uint64(len(all))+1, ReaderOptions{}))
	require.Equal(t, txs, commits(all))
}

// TestFollowPartialFrame shows a following reader without Limit waiting for
// a half-written frame instead of calling it corrupt, and a non-following
// one treating it as the end.
func TestFollowPartialFrame(t *testing.T) {
	dir := t.TempDir()
	txs := committedTrail(t, dir, 3)
	path := lastSegment(t, dir)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	cut := int64(len(data)) - 13 // inside the last COMMIT frame
	require.NoError(t, os.Truncate(path, cut))

	recs := readAll(t, dir, 0, ReaderOptions{})
	require.Equal(t, txs[:2], commits(recs), "the partial frame is the end, not corruption")

	polled := make(chan struct{}, 1)
	r, err := NewReader(dir, 0, ReaderOptions{Follow: true, PollInterval: time.Millisecond,
		Idle: func() {
			select {
			case polled <- struct{}{}:
			default:
			}
		}})
	require.NoError(t, err)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range recs {
		_, err := r.Next(ctx)
		require.NoError(t, err)
	}
	go func() {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return
		}
		defer f.Close()
		for _, b := range data[cut:] { // byte by byte, each after the reader looked
			select {
			case <-polled:
			case <-ctx.Done():
				return
			}
			_, _ = f.Write([]byte{b})
		}
	}()
	rec, err := r.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, RecordCommit, rec.Type)
	require.Equal(t, txs[2], rec.Tx)
}

// TestSpeculateWaitsWhileGenerationOdd: an odd generation (a rollback
// cutting the tail, or no recovered writer yet) keeps a speculative reader
// at the durable position even though bytes lie beyond it.
func TestSpeculateWaitsWhileGenerationOdd(t *testing.T) {
	dir := t.TempDir()
	w := openW(t, dir, Options{})
	defer w.Close()
	require.NoError(t, w.Begin(txn(1)))
	require.NoError(t, w.Change(insert(usersRel(), 1)))
	_, err := w.Sync()
	require.NoError(t, err)
	gen := uint64(1)
	r, err := NewReader(dir, 0, ReaderOptions{Limit: w.Durable, Speculate: func() uint64 { return gen }})
	require.NoError(t, err)
	defer r.Close()
	_, err = r.Next(context.Background())
	require.ErrorIs(t, err, io.EOF, "odd generation: nothing read ahead")
	gen = w.Generation()
	require.Zero(t, gen%2, "a writer's generation is even at rest")
	rec, err := r.Next(context.Background())
	require.NoError(t, err)
	require.Equal(t, RecordBegin, rec.Type)
	require.NoError(t, w.Rollback())
}
