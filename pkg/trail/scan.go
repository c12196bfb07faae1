package trail

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Telling a torn tail from corruption (doc.go, "Torn tail or corruption").
const (
	// minFrame is the smallest frame on disk: a header and a payload of at
	// least one byte, padded to 8. It bounds how many records can lie
	// between two offsets.
	minFrame = frameHeader + 8
	// maxCommitPayload bounds the COMMIT payloads the scan recognises. A
	// COMMIT is a few dozen bytes plus its origin name; a longer one is not
	// taken as evidence, which can only make recovery treat damage as a
	// torn tail, as it did before the scan existed.
	maxCommitPayload = 64 << 10
	// scanChunk is how much of the file the scan reads at a time.
	scanChunk = 1 << 20
)

// errNoCommit is findCommitAfter's "no evidence of corruption".
var errNoCommit = errors.New("no intact COMMIT after the damage")

// findCommitAfter looks for evidence that the bad frame at badOff of a
// segment (whose record should have had seq badSeq) is damaged data rather
// than a torn write: an intact COMMIT record of the same segment at an
// 8-byte aligned offset in (badOff, size) whose seq could follow badSeq
// there. It returns that COMMIT's offset and seq, errNoCommit when there is
// none, or an I/O error.
func findCommitAfter(f io.ReaderAt, size int64, firstSeq uint64, badOff int64, badSeq uint64) (int64, uint64, error) {
	seed := crcSeed(firstSeq)
	// Consecutive chunks overlap by the largest frame recognised, so every
	// such frame lies wholly inside one chunk. Both sizes are multiples of
	// 8, which keeps every chunk start aligned.
	const overlap = frameHeader + maxCommitPayload
	buf := make([]byte, min(scanChunk, max(size-badOff, 0)))
	for start := badOff + frameHeader; start < size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-start)], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, 0, fmt.Errorf("scan trail segment after damage: %w", err)
		}
		if off, seq, ok := findCommit(buf[:n], start, seed, badOff, badSeq); ok {
			return off, seq, nil
		}
		if err != nil || start+int64(n) >= size {
			break
		}
		start += int64(n) - overlap
	}
	return 0, 0, errNoCommit
}

// findCommit scans b, the file bytes from offset base, for the first 8-byte
// aligned frame lying wholly in b that holds an intact COMMIT of the segment
// whose checksum seed is seed, with a seq that records between badOff and
// it could reach: badSeq < seq ≤ badSeq + (off-badOff)/minFrame. It never
// panics, whatever b holds.
func findCommit(b []byte, base int64, seed uint32, badOff int64, badSeq uint64) (off int64, seq uint64, ok bool) {
	for i := (8 - base%8) % 8; i+minFrame <= int64(len(b)); i += 8 {
		n := int64(binary.LittleEndian.Uint32(b[i:]))
		if n == 0 || n > maxCommitPayload || i+frameHeader+n > int64(len(b)) {
			continue
		}
		p := b[i+frameHeader : i+frameHeader+n]
		if RecordType(p[0]) != RecordCommit {
			continue // cheap filter before the checksum
		}
		if crc32.Update(crc32.Update(seed, castagnoli, b[i:i+4]), castagnoli, p) != binary.LittleEndian.Uint32(b[i+4:]) {
			continue
		}
		rec, err := decodeRecord(p, nil, nil)
		if err != nil || rec.Seq <= badSeq {
			continue
		}
		at := base + i
		if at <= badOff || (rec.Seq-badSeq) > uint64(at-badOff)/minFrame {
			continue
		}
		return at, rec.Seq, true
	}
	return 0, 0, false
}

// notTorn returns the CorruptError for a bad frame that intact data
// follows, or nil when the damage may be a torn tail.
func notTorn(f io.ReaderAt, path string, size int64, firstSeq uint64, badOff int64, badSeq uint64, reason string) error {
	at, seq, err := findCommitAfter(f, size, firstSeq, badOff, badSeq)
	if errors.Is(err, errNoCommit) {
		return nil
	}
	if err != nil {
		return err
	}
	return &CorruptError{File: path, Offset: badOff, Reason: fmt.Sprintf(
		"%s, but an intact COMMIT (seq %d) follows at offset %d: damaged data, not a torn write", reason, seq, at)}
}
