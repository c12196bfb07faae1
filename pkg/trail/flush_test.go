package trail

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// TestAsyncGroupCommit: a producer appends and hands marks to a syncer
// goroutine, across rollovers; durability only moves forward, only to
// commits that were flushed, and everything reads back in order.
func TestAsyncGroupCommit(t *testing.T) {
	dir := t.TempDir()
	w := openW(t, dir, Options{SegmentBytes: 16 << 10, BufferBytes: 4 << 10})
	rel := usersRel()
	marks := make(chan FlushMark, 1)
	done := make(chan error, 1)
	var last change.LSN
	go func() {
		for m := range marks {
			got, err := w.SyncFlushed(m)
			if err != nil {
				done <- err
				return
			}
			if got < last || got < m.End() {
				done <- errRegress
				return
			}
			last = got
		}
		done <- nil
	}()
	const n = 400
	var end change.LSN
	for i := 1; i <= n; i++ {
		end = writeTx(t, w, i, 5, rel).EndLSN
		if i%7 == 0 {
			m, err := w.Flush()
			require.NoError(t, err)
			require.Equal(t, end, m.End())
			marks <- m
		}
	}
	m, err := w.Flush()
	require.NoError(t, err)
	marks <- m
	close(marks)
	require.NoError(t, <-done)
	require.Equal(t, end, w.LastEndLSN())
	require.Equal(t, end, last)
	require.NoError(t, w.Close())

	recs := readAll(t, dir, 0, ReaderOptions{})
	requireContiguous(t, recs, recs[0].Seq)
	require.Len(t, commits(recs), n)
	segs, err := Segments(dir)
	require.NoError(t, err)
	require.Greater(t, len(segs), 3, "rolled over while syncing asynchronously")
}

// TestFlushIsNotDurable: a flushed but unsynced commit is not published.
func TestFlushIsNotDurable(t *testing.T) {
	w := openW(t, t.TempDir(), Options{})
	tx := writeTx(t, w, 1, 1, usersRel())
	m, err := w.Flush()
	require.NoError(t, err)
	require.Zero(t, w.LastEndLSN(), "flushed is not durable")
	got, err := w.SyncFlushed(m)
	require.NoError(t, err)
	require.Equal(t, tx.EndLSN, got)
	require.Equal(t, tx.EndLSN, w.LastEndLSN())
}

type regressErr struct{}

func (regressErr) Error() string { return "durable position went backwards or short of the mark" }

var errRegress = regressErr{}

// TestRolloverWhileSyncsPending: a syncer that is never idle must not
// postpone rollover — segments stay bounded, pending marks on a retired
// segment still complete, and durability never goes backwards.
func TestRolloverWhileSyncsPending(t *testing.T) {
	dir := t.TempDir()
	w := openW(t, dir, Options{SegmentBytes: 16 << 10, BufferBytes: 4 << 10})
	rel := usersRel()
	var pending []FlushMark
	var end change.LSN
	for i := 1; i <= 300; i++ {
		end = writeTx(t, w, i, 5, rel).EndLSN
		m, err := w.Flush()
		require.NoError(t, err)
		pending = append(pending, m)
		if len(pending) > 2 { // always at least two marks outstanding
			_, err := w.SyncFlushed(pending[0])
			require.NoError(t, err)
			pending = pending[1:]
		}
	}
	segs, err := Segments(dir)
	require.NoError(t, err)
	require.Greater(t, len(segs), 5, "rolled over with syncs pending")
	var last change.LSN
	for _, m := range pending {
		got, err := w.SyncFlushed(m)
		require.NoError(t, err)
		require.GreaterOrEqual(t, got, last)
		last = got
	}
	require.Equal(t, end, last)
	require.NoError(t, w.Close())
	recs := readAll(t, dir, 0, ReaderOptions{})
	requireContiguous(t, recs, recs[0].Seq)
	require.Len(t, commits(recs), 300)
}
