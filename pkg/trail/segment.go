package trail

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// SegmentInfo describes one segment file, for tools and metrics.
type SegmentInfo struct {
	// Path is the segment's file path.
	Path string
	// FirstSeq is the sequence number of the segment's first record.
	FirstSeq uint64
	// SystemID is the source system identifier in the header.
	SystemID uint64
	// SourceKind is the kind of source the trail was written from:
	// "postgres" (pgoutput) or "trigger".
	SourceKind string
	// PrevEndLSN is the EndLSN of the last commit before this segment.
	PrevEndLSN change.LSN
	// Bytes is the file size.
	Bytes int64
}

// Segments lists the trail's segments, oldest first, checking every header.
// A damaged header is a *CorruptError.
func Segments(dir string) ([]SegmentInfo, error) {
	seqs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	infos := make([]SegmentInfo, 0, len(seqs))
	for _, s := range seqs {
		path := filepath.Join(dir, segmentName(s))
		f, h, err := openSegment(path, s)
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("stat trail segment: %w", err)
		}
		infos = append(infos, SegmentInfo{Path: path, FirstSeq: s, SystemID: h.systemID, SourceKind: sourceKindName(h.sourceKind), PrevEndLSN: h.prevEndLSN, Bytes: st.Size()})
	}
	return infos, nil
}

// listSegments returns the first seqs of the segments in dir, ascending.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list trail segments: %w", err)
	}
	var seqs []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segmentSuffix)
		if !ok || e.IsDir() {
			continue
		}
		s, err := strconv.ParseUint(name, 10, 64)
		if err != nil || segmentName(s) != e.Name() {
			continue // not ours
		}
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	return seqs, nil
}

// openSegment opens a segment read-only and checks its header against the
// first seq its name promises.
func openSegment(path string, firstSeq uint64) (*os.File, header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, header{}, fmt.Errorf("open trail segment: %w", err)
	}
	h, err := readHeader(f, path, firstSeq)
	if err != nil {
		f.Close()
		return nil, header{}, err
	}
	return f, h, nil
}

func readHeader(f *os.File, path string, firstSeq uint64) (header, error) {
	b := make([]byte, headerSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return header{}, &CorruptError{File: path, Offset: 0, Reason: "short segment header"}
		}
		return header{}, fmt.Errorf("read trail segment header: %w", err)
	}
	h, err := decodeHeader(b)
	if err != nil {
		return header{}, &CorruptError{File: path, Offset: 0, Reason: err.Error()}
	}
	if h.firstSeq != firstSeq {
		return header{}, &CorruptError{File: path, Offset: 24, Reason: fmt.Sprintf("header first seq %d does not match the file name", h.firstSeq)}
	}
	return h, nil
}

// syncDir fsyncs a directory so that a created, renamed or removed entry
// survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open trail directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync trail directory: %w", err)
	}
	return nil
}

// Frame-level outcomes of frameReader.next other than a complete record.
var (
	// errEnd: no bytes at all at the offset — a clean end of data.
	errEnd = errors.New("end of segment")
	// errTorn: some bytes but not a whole frame, or a frame that fails its
	// checks. At the tail of the active segment this is a write in progress
	// (or torn by a crash); anywhere else it is corruption.
	errTorn = errors.New("incomplete or invalid frame")
)

// frameReader reads the frames of one segment through ReadAt and its own
// buffer rather than a bufio.Reader, so a reader following a live writer can
// retry at the same offset, and can be told not to read past a limit.
type frameReader struct {
	f      *os.File
	seed   uint32
	buf    []byte // file bytes [off, off+len(buf))
	off    int64
	reason string // why the last errTorn
}

const readChunk = 256 << 10

func newFrameReader(f *os.File, firstSeq uint64) *frameReader {
	return &frameReader{f: f, seed: crcSeed(firstSeq)}
}

// reset forgets buffered bytes; after waiting for a live writer they may be
// stale (a rollback may have rewritten them).
func (fr *frameReader) reset() { fr.buf = fr.buf[:0] }

// fill makes bytes [off, off+n) available, reading no further than limit
// (<0: no limit). It returns fewer bytes at the end of the data.
func (fr *frameReader) fill(off int64, n int, limit int64) ([]byte, error) {
	if off >= fr.off && off+int64(n) <= fr.off+int64(len(fr.buf)) {
		s := off - fr.off
		return fr.buf[s : s+int64(n)], nil
	}
	want := max(n, readChunk)
	if limit >= 0 && off+int64(want) > limit {
		want = int(max(limit-off, 0))
	}
	if cap(fr.buf) < want {
		fr.buf = make([]byte, want)
	}
	fr.buf = fr.buf[:want]
	m, err := fr.f.ReadAt(fr.buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		fr.buf = fr.buf[:0]
		return nil, fmt.Errorf("read trail segment: %w", err)
	}
	fr.buf, fr.off = fr.buf[:m], off
	return fr.buf[:min(n, m)], nil
}

// next reads the frame at off and returns its checked payload (aliasing the
// buffer until the next call) and the offset of the following frame. It
// returns errEnd, errTorn (with fr.reason) or an I/O error.
func (fr *frameReader) next(off, limit int64) ([]byte, int64, error) {
	h, err := fr.fill(off, frameHeader, limit)
	if err != nil {
		return nil, 0, err
	}
	if len(h) == 0 {
		return nil, 0, errEnd
	}
	if len(h) < frameHeader {
		fr.reason = "short frame header"
		return nil, 0, errTorn
	}
	n := int64(binary.LittleEndian.Uint32(h))
	sum := binary.LittleEndian.Uint32(h[4:])
	if n == 0 {
		fr.reason = "zero frame length"
		return nil, 0, errTorn
	}
	if off+frameHeader+n > fr.off+int64(len(fr.buf)) {
		// Not buffered: check the length against the file size before
		// allocating, so a garbage length cannot drive a huge allocation.
		st, err := fr.f.Stat()
		if err != nil {
			return nil, 0, fmt.Errorf("stat trail segment: %w", err)
		}
		if off+padded(n) > st.Size() {
			fr.reason = fmt.Sprintf("frame length %d runs past the end of the file", n)
			return nil, 0, errTorn
		}
	}
	sumLen := crc32.Update(fr.seed, castagnoli, h[:4]) // before fill may move h
	p, err := fr.fill(off+frameHeader, int(n), limit)
	if err != nil {
		return nil, 0, err
	}
	if int64(len(p)) < n {
		fr.reason = fmt.Sprintf("frame length %d runs past the readable data", n)
		return nil, 0, errTorn
	}
	if got := crc32.Update(sumLen, castagnoli, p); got != sum {
		fr.reason = fmt.Sprintf("frame checksum %08x, want %08x", got, sum)
		return nil, 0, errTorn
	}
	return p, off + padded(n), nil
}
