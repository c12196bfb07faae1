package trail

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// frame returns one padded frame of the segment starting at firstSeq.
func frame(firstSeq uint64, payload []byte) []byte {
	b := make([]byte, frameHeader, padded(int64(len(payload))))
	b = append(b, payload...)
	putFrameHeader(b, crcSeed(firstSeq), payload)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	return b
}

func commitFrame(firstSeq, seq uint64) []byte {
	return frame(firstSeq, appendTx(nil, RecordCommit, seq, txn(1)))
}

func TestFindCommit(t *testing.T) {
	const first, badOff, badSeq = 100, 48, 110
	at := func(off int, f []byte) []byte { // f at off in 4 KiB of garbage
		b := randomBytes(4096)
		copy(b[off:], f)
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want int64 // index in b of the COMMIT found; 0: none
	}{
		{"commit", at(1024, commitFrame(first, badSeq+3)), 1024},
		{"right after the bad frame", at(16, commitFrame(first, badSeq+1)), 16},
		{"unaligned", at(1025, commitFrame(first, badSeq+3)), 0},
		{"other segment", at(1024, commitFrame(first+1, badSeq+3)), 0},
		{"seq of the bad record", at(1024, commitFrame(first, badSeq)), 0},
		{"seq before it", at(1024, commitFrame(first, badSeq-5)), 0},
		{"seq too far for the distance", at(16, commitFrame(first, badSeq+2)), 0},
		{"not a commit", at(1024, frame(first, appendTx(nil, RecordBegin, badSeq+3, txn(1)))), 0},
		{"runs past the end", at(4096-24, commitFrame(first, badSeq+3)), 0},
		{"zeros", make([]byte, 4096), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			off, seq, ok := findCommit(tc.b, badOff, crcSeed(first), badOff, badSeq)
			if tc.want == 0 {
				require.False(t, ok, "found seq %d at %d", seq, off)
				return
			}
			require.True(t, ok)
			require.Equal(t, badOff+tc.want, off)
			require.Greater(t, seq, uint64(badSeq))
		})
	}
}

// TestFindCommitAfterChunks: a COMMIT straddling the scan's chunk boundary
// is found, in a tail larger than one chunk.
func TestFindCommitAfterChunks(t *testing.T) {
	const first = 1
	for _, at := range []int64{scanChunk - 8, scanChunk + 8, 2*scanChunk - frameHeader*2 - 8, 3*scanChunk - 64} {
		b := make([]byte, 3*scanChunk)
		copy(b[at:], commitFrame(first, 5000))
		off, seq, err := findCommitAfter(bytes.NewReader(b), int64(len(b)), first, 48, 10)
		require.NoError(t, err, "at %d", at)
		require.Equal(t, at, off)
		require.Equal(t, uint64(5000), seq)
	}
	_, _, err := findCommitAfter(bytes.NewReader(make([]byte, 3*scanChunk)), 3*scanChunk, first, 48, 10)
	require.ErrorIs(t, err, errNoCommit)
}

// FuzzFindCommit: the scanner never panics, and what it reports is an
// aligned, intact COMMIT of the segment in the allowed seq range.
func FuzzFindCommit(f *testing.F) {
	f.Add(commitFrame(1, 3), uint64(1), uint64(2))
	f.Add(append(make([]byte, 16), commitFrame(7, 9)...), uint64(7), uint64(1))
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 5, 0, 0, 0, 5, 1}, uint64(1), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, first, badSeq uint64) {
		const base = 48
		off, seq, ok := findCommit(b, base, crcSeed(first), base-16, badSeq)
		if !ok {
			return
		}
		require.Zero(t, off%8)
		i := off - base
		n := int64(binary.LittleEndian.Uint32(b[i:]))
		rec, err := decodeRecord(b[i+frameHeader:i+frameHeader+n], nil, nil)
		require.NoError(t, err)
		require.Equal(t, RecordCommit, rec.Type)
		require.Equal(t, seq, rec.Seq)
		require.Greater(t, seq, badSeq)
	})
}

// frameStarts walks the frames of a valid segment and returns their offsets.
func frameStarts(t *testing.T, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var offs []int64
	for off := int64(headerSize); off < int64(len(b)); {
		offs = append(offs, off)
		off += padded(int64(binary.LittleEndian.Uint32(b[off:])))
	}
	return offs
}

// dirBytes returns every file of dir by name, to check that nothing changed.
func dirBytes(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	m := make(map[string][]byte)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		m[e.Name()] = b
	}
	return m
}

func overwrite(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
}

// TestDamageBeforeCommitsIsRefused: damage in the middle of the active
// segment with intact, committed transactions after it is not a torn tail.
// Recovery (and a reader) refuse it naming file and offset, and leave every
// file byte for byte as it was.
func TestDamageBeforeCommitsIsRefused(t *testing.T) {
	for name, damage := range map[string]func(frameOff int64) (int64, []byte){
		"four bytes flipped in a payload": func(o int64) (int64, []byte) { return o + 12, []byte{0xde, 0xad, 0xbe, 0xef} },
		"checksum flipped":                func(o int64) (int64, []byte) { return o + 4, []byte{0x5a} },
		"length zeroed":                   func(o int64) (int64, []byte) { return o, []byte{0, 0, 0, 0} },
		"huge length":                     func(o int64) (int64, []byte) { return o, []byte{0xff, 0xff, 0xff, 0x7f} },
		"sector of zeros":                 func(o int64) (int64, []byte) { return o, make([]byte, 512) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			committedTrail(t, dir, 40)
			path := lastSegment(t, dir)
			starts := frameStarts(t, path)
			victim := starts[len(starts)/2]
			at, b := damage(victim)
			if b[0] == 0x5a { // flip, don't set
				old := make([]byte, 1)
				f, err := os.Open(path)
				require.NoError(t, err)
				_, err = f.ReadAt(old, at)
				require.NoError(t, err)
				f.Close()
				b = []byte{old[0] ^ 0x5a}
			}
			overwrite(t, path, at, b)
			before := dirBytes(t, dir)

			_, err := Open(dir, Options{})
			var ce *CorruptError
			require.ErrorAs(t, err, &ce)
			require.ErrorIs(t, err, ErrCorrupt)
			require.Equal(t, path, ce.File)
			require.Equal(t, victim, ce.Offset)
			require.Contains(t, err.Error(), path)
			require.Contains(t, err.Error(), "intact COMMIT")
			require.Equal(t, before, dirBytes(t, dir), "nothing cut, nothing written")

			_, err = tryReadAll(dir, 0, ReaderOptions{})
			require.ErrorAs(t, err, &ce)
			require.Equal(t, path, ce.File)
			require.Equal(t, victim, ce.Offset)
			require.Equal(t, before, dirBytes(t, dir))
		})
	}
}

// TestTornTailWithIntactFramesIsRepaired: intact frames after a bad one
// but no COMMIT among them — the rest of a transaction never committed, as
// left by a crash, a rollback or an earlier repair — is a torn tail.
func TestTornTailWithIntactFramesIsRepaired(t *testing.T) {
	dir := t.TempDir()
	txs := committedTrail(t, dir, 3)
	w := openW(t, dir, Options{})
	path := lastSegment(t, dir)
	begin := fileSize(t, path)
	require.NoError(t, w.Begin(txn(7)))
	for i := range 20 {
		require.NoError(t, w.Change(insert(usersRel(), 7000+i)))
	}
	_, err := w.Sync() // the open transaction reaches the disk
	require.NoError(t, err)
	require.NoError(t, w.f.Close()) // crash
	flipBit(t, path, begin+frameHeader+2)
	requireRepaired(t, dir, txs[2], 3)
}

// TestDamagedLastCommitIsRepaired documents the limit of the rule: damage
// to the last COMMIT itself, with nothing intact after it, looks exactly
// like a torn write. The transaction is cut (and saved); capture then finds
// the slot ahead of the trail if it had been acknowledged, and stops.
func TestDamagedLastCommitIsRepaired(t *testing.T) {
	dir := t.TempDir()
	txs := committedTrail(t, dir, 3)
	path := lastSegment(t, dir)
	starts := frameStarts(t, path)
	flipBit(t, path, starts[len(starts)-1]+frameHeader+1)
	requireRepaired(t, dir, txs[1], 2)
	_, err := tryReadAll(dir, 0, ReaderOptions{})
	require.False(t, errors.Is(err, ErrCorrupt))
}
