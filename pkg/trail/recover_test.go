package trail

import (
	"crypto/rand"
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// committedTrail writes n synced transactions and returns them.
func committedTrail(t *testing.T, dir string, n int) []*change.Tx {
	t.Helper()
	w := openW(t, dir, Options{})
	var txs []*change.Tx
	for i := range n {
		txs = append(txs, writeTx(t, w, i, 3, usersRel()))
		_, err := w.Sync()
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	return txs
}

// requireRepaired opens the damaged trail and checks that it ends with
// wantLast, kept the cut bytes, and takes new transactions.
func requireRepaired(t *testing.T, dir string, wantLast *change.Tx, wantCommits int) {
	t.Helper()
	path := lastSegment(t, dir)
	sizeBefore := fileSize(t, path)
	w := openW(t, dir, Options{})
	require.Equal(t, wantLast.EndLSN, w.LastEndLSN())
	require.FileExists(t, path+brokenSuffix)
	require.Equal(t, sizeBefore, fileSize(t, path)+fileSize(t, path+brokenSuffix), "every cut byte is saved")

	next := writeTx(t, w, 99, 2, usersRel())
	end, err := w.Sync()
	require.NoError(t, err)
	require.Equal(t, next.EndLSN, end)
	require.NoError(t, w.Close())

	recs := readAll(t, dir, 0, ReaderOptions{})
	requireContiguous(t, recs, 1)
	txs := commits(recs)
	require.Len(t, txs, wantCommits+1)
	require.Equal(t, wantLast, txs[wantCommits-1])
	require.Equal(t, next, txs[wantCommits])
}

func TestRecoverTornTail(t *testing.T) {
	dir := t.TempDir()
	txs := committedTrail(t, dir, 4)
	path := lastSegment(t, dir)
	require.NoError(t, os.Truncate(path, fileSize(t, path)-5)) // cut into the last COMMIT
	requireRepaired(t, dir, txs[2], 3)
}

func TestRecoverTornFrameHeader(t *testing.T) {
	dir := t.TempDir()
	txs := committedTrail(t, dir, 2)
	path := lastSegment(t, dir)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.Write([]byte{0x40, 0, 0}) // three bytes of a frame header
	require.NoError(t, err)
	require.NoError(t, f.Close())
	requireRepaired(t, dir, txs[1], 2)
}

func TestRecoverGarbageTail(t *testing.T) {
	for name, garbage := range map[string][]byte{
		"random":      randomBytes(1000),
		"zeros":       make([]byte, 4096), // a file extended by the filesystem but never written
		"huge length": {0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5, 6, 7, 8},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			txs := committedTrail(t, dir, 3)
			f, err := os.OpenFile(lastSegment(t, dir), os.O_WRONLY|os.O_APPEND, 0)
			require.NoError(t, err)
			_, err = f.Write(garbage)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			requireRepaired(t, dir, txs[2], 3)
		})
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func TestRecoverUncommittedTail(t *testing.T) {
	dir := t.TempDir()
	w := openW(t, dir, Options{})
	first := writeTx(t, w, 1, 2, usersRel())
	require.NoError(t, w.Begin(txn(2)))
	require.NoError(t, w.Schema(ordersRel()))
	require.NoError(t, w.Change(insert(usersRel(), 7)))
	_, err := w.Sync() // the open transaction reaches the disk
	require.NoError(t, err)
	require.Equal(t, first.EndLSN, w.LastEndLSN())
	require.NoError(t, w.f.Close()) // crash: no Close, no Rollback

	w = openW(t, dir, Options{})
	require.Equal(t, first.EndLSN, w.LastEndLSN())
	require.NotContains(t, w.schemas, ordersRel().OID, "the dropped transaction's schema is forgotten")
	require.NoError(t, w.Close())
	require.FileExists(t, lastSegment(t, dir)+brokenSuffix)
	requireRepairedAgain := func() {
		// A second crash with a torn tail keeps the first evidence.
		path := lastSegment(t, dir)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		require.NoError(t, err)
		_, err = f.Write([]byte("garbage!"))
		require.NoError(t, err)
		require.NoError(t, f.Close())
		w := openW(t, dir, Options{})
		require.NoError(t, w.Close())
		require.FileExists(t, path+brokenSuffix+".1")
	}
	requireRepairedAgain()
	recs := readAll(t, dir, 0, ReaderOptions{})
	require.Equal(t, []*change.Tx{first}, commits(recs))
}

func TestRecoverRemovesTemporarySegment(t *testing.T) {
	dir := t.TempDir()
	committedTrail(t, dir, 1)
	tmp := segPath(dir, 77) + tmpSuffix
	require.NoError(t, os.WriteFile(tmp, []byte("half a header"), 0o644))
	w := openW(t, dir, Options{})
	require.NoError(t, w.Close())
	require.NoFileExists(t, tmp)
}

// sealedTrail writes enough to fill several segments.
func sealedTrail(t *testing.T, dir string) []SegmentInfo {
	t.Helper()
	w := openW(t, dir, Options{SegmentBytes: 4096})
	for n := range 40 {
		writeTx(t, w, n, 5, usersRel())
		_, err := w.Sync()
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	segs, err := Segments(dir)
	require.NoError(t, err)
	require.Greater(t, len(segs), 3)
	return segs
}

func flipBit(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)
	b[0] ^= 0x10
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
}

func TestCorruptSealedSegment(t *testing.T) {
	dir := t.TempDir()
	segs := sealedTrail(t, dir)
	victim := segs[1]
	flipBit(t, victim.Path, victim.Bytes/2)

	// Open only checks sealed headers: capture can keep going.
	w := openW(t, dir, Options{})
	require.NoError(t, w.Close())

	_, err := tryReadAll(dir, 0, ReaderOptions{})
	var ce *CorruptError
	require.ErrorAs(t, err, &ce)
	require.ErrorIs(t, err, ErrCorrupt)
	require.Equal(t, victim.Path, ce.File)
	require.LessOrEqual(t, ce.Offset, victim.Bytes/2)
	require.Greater(t, ce.Offset, victim.Bytes/2-2000)
	require.Zero(t, ce.Offset%8, "frames are aligned")
	require.Contains(t, err.Error(), victim.Path)

	// Readers starting past the damage are unaffected.
	recs := readAll(t, dir, segs[2].FirstSeq, ReaderOptions{})
	requireContiguous(t, recs, segs[2].FirstSeq)
}

func TestCorruptSealedSegmentHeader(t *testing.T) {
	dir := t.TempDir()
	segs := sealedTrail(t, dir)
	flipBit(t, segs[0].Path, 20) // inside the system identifier
	_, err := Open(dir, Options{})
	var ce *CorruptError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, segs[0].Path, ce.File)
	require.Equal(t, int64(0), ce.Offset)
	_, err = Segments(dir)
	require.ErrorIs(t, err, ErrCorrupt)
}

func TestCorruptBelowLimitIsNotWaitedFor(t *testing.T) {
	dir := t.TempDir()
	committedTrail(t, dir, 3)
	w := openW(t, dir, Options{})
	defer w.Close()
	path := lastSegment(t, dir)
	flipBit(t, path, fileSize(t, path)-20) // durable, in the active segment
	_, err := tryReadAll(dir, 0, ReaderOptions{Limit: w.Durable, Follow: true})
	require.True(t, errors.Is(err, ErrCorrupt), "got %v", err)
}
