package trail

import (
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

func TestOpenNewTrail(t *testing.T) {
	dir := t.TempDir() + "/nested/trail"
	w := openW(t, dir, Options{SystemID: 99})
	require.Equal(t, uint64(1), w.NextSeq())
	require.Equal(t, change.LSN(0), w.LastEndLSN())
	require.Equal(t, uint64(99), w.SystemID())
	require.Equal(t, Position{Seq: 1, Segment: 1, Offset: headerSize}, w.Durable())
	require.NoError(t, w.Close())
	require.ErrorIs(t, w.Close(), ErrClosed)
	require.ErrorIs(t, w.Begin(txn(1)), ErrClosed)

	segs, err := Segments(dir)
	require.NoError(t, err)
	require.Len(t, segs, 1)
	require.Equal(t, "00000000000000000001.trail", segs[0].Path[len(segs[0].Path)-26:])
	require.Equal(t, SegmentInfo{Path: segPath(dir, 1), FirstSeq: 1, SystemID: 99, SourceKind: "postgres", Bytes: headerSize}, segs[0])
}

func TestRollover(t *testing.T) {
	dir := t.TempDir()
	w := openW(t, dir, Options{SegmentBytes: 4096})
	users, orders := usersRel(), ordersRel()
	var last *change.Tx
	for n := range 200 {
		rel := users
		if n%3 == 0 {
			rel = orders
		}
		if n == 100 { // a schema change mid-trail must win over the older one in later segments
			users = usersRel()
			users.Columns = append(users.Columns, change.Column{Name: "email", TypeOID: 25, TypeName: "text", TypeMod: -1})
			rel = users
		}
		tx := txn(n)
		require.NoError(t, w.Begin(tx))
		for i := range 3 {
			c := insert(rel, n*10+i)
			c.New = append(c.New[:len(c.New):len(c.New)], make(change.Row, len(rel.Columns)-len(c.New))...)
			require.NoError(t, w.Change(c))
		}
		require.NoError(t, w.Commit(tx))
		end, err := w.Sync()
		require.NoError(t, err)
		require.Equal(t, tx.EndLSN, end)
		last = tx
	}
	nextSeq := w.NextSeq()
	require.NoError(t, w.Close())

	segs, err := Segments(dir)
	require.NoError(t, err)
	require.Greater(t, len(segs), 5)
	for i, s := range segs[1:] {
		require.NotZero(t, s.PrevEndLSN, "segment %d records the last EndLSN before it", i+1)
	}

	recs := readAll(t, dir, 0, ReaderOptions{})
	requireContiguous(t, recs, 1)
	require.Equal(t, nextSeq, recs[len(recs)-1].Seq+1)
	txs := commits(recs)
	require.Len(t, txs, 200)
	for n, tx := range txs {
		require.Equal(t, txn(n).EndLSN, tx.EndLSN)
	}
	for _, r := range recs {
		if r.Type == RecordChange {
			require.NotNil(t, r.Change.Relation)
			require.Len(t, r.Change.New, len(r.Change.Relation.Columns))
		}
	}

	// A reader starting inside a later segment resolves relations from the
	// schemas re-written at that segment's start, and gets the new users
	// schema.
	from := segs[len(segs)-2].FirstSeq + 2
	tail := readAll(t, dir, from, ReaderOptions{})
	requireContiguous(t, tail, from)
	require.Equal(t, recs[from-1:], tail)
	seen := false
	for _, r := range tail {
		if r.Type == RecordChange && r.Change.Relation.Name == "users" {
			require.Len(t, r.Change.Relation.Columns, 4)
			seen = true
		}
	}
	require.True(t, seen)

	// Reopening rebuilds LastEndLSN, NextSeq and the schema map from the
	// active segment: an equal relation does not get another SCHEMA record.
	w = openW(t, dir, Options{SegmentBytes: 4096})
	require.Equal(t, last.EndLSN, w.LastEndLSN())
	require.Equal(t, nextSeq, w.NextSeq())
	require.Len(t, w.schemas, 2)
	tx := txn(500)
	require.NoError(t, w.Begin(tx))
	c := insert(usersRel(), 1)
	c.New = append(c.New, change.Null)
	c.Relation.Columns = append(c.Relation.Columns, change.Column{Name: "email", TypeOID: 25, TypeName: "text", TypeMod: -1})
	require.NoError(t, w.Change(c))
	require.NoError(t, w.Commit(tx))
	require.NoError(t, w.Close())
	recs = readAll(t, dir, nextSeq, ReaderOptions{})
	require.Equal(t, []RecordType{RecordBegin, RecordChange, RecordCommit}, []RecordType{recs[0].Type, recs[1].Type, recs[2].Type})
}

func TestPurge(t *testing.T) {
	dir := t.TempDir()
	w := openW(t, dir, Options{SegmentBytes: 2048})
	users := usersRel()
	for n := range 60 {
		writeTx(t, w, n, 4, users)
		_, err := w.Sync()
		require.NoError(t, err)
	}
	segs, err := Segments(dir)
	require.NoError(t, err)
	require.Greater(t, len(segs), 4)

	// below = first seq of segment 3: segments 0..2 hold only seqs below it.
	below := segs[3].FirstSeq
	removed, err := w.Purge(below)
	require.NoError(t, err)
	require.Equal(t, 3, removed)
	after, err := Segments(dir)
	require.NoError(t, err)
	require.Equal(t, segs[3:], after)

	// below inside a segment keeps that segment.
	removed, err = w.Purge(segs[4].FirstSeq - 1)
	require.NoError(t, err)
	require.Zero(t, removed)

	recs := readAll(t, dir, below+1, ReaderOptions{})
	requireContiguous(t, recs, below+1)
	_, err = NewReader(dir, 1, ReaderOptions{})
	require.ErrorIs(t, err, ErrPurged)
	recs = readAll(t, dir, 0, ReaderOptions{}) // 0: the oldest remaining
	require.Equal(t, below, recs[0].Seq)

	// Never the active segment, whatever the bound.
	removed, err = w.Purge(1 << 62)
	require.NoError(t, err)
	require.Equal(t, len(segs)-4, removed)
	after, err = Segments(dir)
	require.NoError(t, err)
	require.Len(t, after, 1)
	writeTx(t, w, 100, 1, users)
	require.NoError(t, w.Close())
	recs = readAll(t, dir, 0, ReaderOptions{})
	require.Equal(t, txn(100).EndLSN, commits(recs)[len(commits(recs))-1].EndLSN)
}

func TestRollback(t *testing.T) {
	for _, tc := range []struct {
		name    string
		changes int
	}{
		{"buffered", 3},
		{"flushed past the buffer", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := openW(t, dir, Options{BufferBytes: 4096})
			users := usersRel()
			first := writeTx(t, w, 1, 2, users)
			_, err := w.Sync()
			require.NoError(t, err)
			seqBefore, sizeBefore := w.NextSeq(), fileSize(t, segPath(dir, 1))

			tx := txn(2)
			require.NoError(t, w.Begin(tx))
			orders := ordersRel()
			require.NoError(t, w.Schema(orders)) // a schema inside the transaction is undone too
			for i := range tc.changes {
				require.NoError(t, w.Change(insert(users, i)))
			}
			if tc.changes > 100 {
				require.Greater(t, fileSize(t, segPath(dir, 1)), sizeBefore, "part of the transaction reached the file")
			}
			require.NoError(t, w.Rollback())
			require.NoError(t, w.Rollback(), "nothing open: no-op")
			require.Equal(t, seqBefore, w.NextSeq())
			require.NotContains(t, w.schemas, orders.OID)
			require.Equal(t, sizeBefore, fileSize(t, segPath(dir, 1)))

			third := txn(3)
			require.NoError(t, w.Begin(third))
			require.NoError(t, w.Change(&change.Change{Op: change.OpDelete, Relation: orders,
				Old: change.Row{change.Text("k"), change.Text("1"), change.Null}}))
			require.NoError(t, w.Commit(third))
			end, err := w.Sync()
			require.NoError(t, err)
			require.Equal(t, third.EndLSN, end)
			require.NoError(t, w.Close())

			recs := readAll(t, dir, 0, ReaderOptions{})
			requireContiguous(t, recs, 1)
			require.Equal(t, []*change.Tx{first, third}, commits(recs))
			require.Equal(t, RecordSchema, recs[seqBefore].Type, "orders schema re-written after the rollback")
		})
	}
}

func TestCloseDropsOpenTransaction(t *testing.T) {
	dir := t.TempDir()
	w := openW(t, dir, Options{})
	first := writeTx(t, w, 1, 1, usersRel())
	require.NoError(t, w.Begin(txn(2)))
	require.NoError(t, w.Close())
	w = openW(t, dir, Options{})
	defer w.Close()
	require.Equal(t, first.EndLSN, w.LastEndLSN())
	require.NoFileExists(t, segPath(dir, 1)+brokenSuffix)
}

func TestSystemIDMismatch(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, openW(t, dir, Options{SystemID: 42}).Close())
	_, err := Open(dir, Options{SystemID: 43})
	require.ErrorIs(t, err, ErrSystemIDMismatch)
	w := openW(t, dir, Options{}) // 0: unknown, not checked
	require.Equal(t, uint64(42), w.SystemID())
	require.NoError(t, w.Close())
	w = openW(t, dir, Options{SystemID: 42})
	require.NoError(t, w.Close())
}

// TestSourceKind: the header records which kind of source wrote the trail;
// another kind cannot continue it, and a trail from before the field reads
// as pgoutput's.
func TestSourceKind(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, openW(t, dir, Options{SystemID: 7, SourceKind: "trigger"}).Close())
	segs, err := Segments(dir)
	require.NoError(t, err)
	require.Equal(t, "trigger", segs[0].SourceKind)
	_, err = Open(dir, Options{SystemID: 7})
	require.ErrorIs(t, err, ErrSystemIDMismatch)
	require.ErrorContains(t, err, "written from a trigger source, opened for a postgres source")
	require.NoError(t, openW(t, dir, Options{SystemID: 7, SourceKind: "trigger"}).Close())

	old := t.TempDir()
	require.NoError(t, openW(t, old, Options{}).Close())
	segs, err = Segments(old)
	require.NoError(t, err)
	require.Equal(t, "postgres", segs[0].SourceKind, "reserved bytes of older trails are 0")
	_, err = Open(old, Options{SourceKind: "mysql"})
	require.ErrorContains(t, err, `unknown source kind "mysql"`)
}

func TestStickyErrors(t *testing.T) {
	t.Run("file closed behind the writer's back", func(t *testing.T) {
		w := openW(t, t.TempDir(), Options{})
		writeTx(t, w, 1, 1, usersRel())
		require.NoError(t, w.f.Close())
		_, err := w.Sync()
		require.Error(t, err)
		require.ErrorIs(t, w.Begin(txn(2)), err)
		_, err2 := w.Sync()
		require.ErrorIs(t, err2, err)
		require.ErrorIs(t, w.Rollback(), err)
		require.ErrorIs(t, w.Close(), err)
	})
	t.Run("fsync failure", func(t *testing.T) {
		w := openW(t, t.TempDir(), Options{})
		errIO := errors.New("injected EIO")
		w.syncFile = func(*os.File) error { return errIO }
		writeTx(t, w, 1, 1, usersRel())
		_, err := w.Sync()
		require.ErrorIs(t, err, errIO)
		require.Zero(t, w.LastEndLSN(), "nothing became durable")
		w.syncFile = fdatasync // even if the disk recovers, the error stays
		_, err = w.Sync()
		require.ErrorIs(t, err, errIO)
		require.ErrorIs(t, w.Commit(txn(1)), errIO)
		require.ErrorIs(t, w.Close(), errIO)
	})
}

func TestIdleSyncDoesNotRollOver(t *testing.T) {
	dir := t.TempDir()
	w := openW(t, dir, Options{SegmentBytes: 100}) // smaller than the schemas alone
	require.NoError(t, w.Schema(usersRel()))
	require.NoError(t, w.Schema(ordersRel()))
	for range 5 {
		_, err := w.Sync()
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	segs, err := Segments(dir)
	require.NoError(t, err)
	require.Len(t, segs, 2, "one rollover for the stand-alone schemas, then none")
}
