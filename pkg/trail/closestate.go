package trail

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// The close state lets Open skip the scan of the active segment after a
// clean Close: recovery reads every record of that segment, up to
// SegmentBytes, which on a large trail made every restart pay hundreds of
// milliseconds before capture could stream again. doc.go ("Close state")
// describes the file and when it is trusted.
const (
	closeStateName  = "trail.closed"
	closeStateMagic = "cdcdcls\x00"
	// closeTailBytes is how much of the segment's end the state vouches
	// for with a checksum: Open re-reads and compares it.
	closeTailBytes = 4096
	// maxCloseState bounds the file Open reads (a garbage file cannot
	// drive a huge allocation); larger states are not written.
	maxCloseState = 16 << 20
)

// closeState is what recovery would learn by scanning the active segment.
type closeState struct {
	segFirst   uint64
	size       int64 // the segment's length: the end of its last record
	nextSeq    uint64
	lastEndLSN change.LSN
	tailCRC    uint32 // CRC-32C of the segment's last min(size, closeTailBytes) bytes
	schemas    map[uint32]*change.Relation
}

func (s closeState) encode() []byte {
	b := []byte(closeStateMagic)
	b = binary.LittleEndian.AppendUint64(b, s.segFirst)
	b = binary.LittleEndian.AppendUint64(b, uint64(s.size))
	b = binary.LittleEndian.AppendUint64(b, s.nextSeq)
	b = binary.LittleEndian.AppendUint64(b, uint64(s.lastEndLSN))
	b = binary.LittleEndian.AppendUint32(b, s.tailCRC)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.schemas)))
	for _, oid := range slices.Sorted(maps.Keys(s.schemas)) {
		p := appendSchema(nil, 0, s.schemas[oid])
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeCloseState(b []byte) (closeState, error) {
	const fixed = len(closeStateMagic) + 4*8 + 2*4
	if len(b) < fixed+4 || string(b[:len(closeStateMagic)]) != closeStateMagic {
		return closeState{}, errors.New("not a close state")
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return closeState{}, errors.New("close state checksum mismatch")
	}
	d := body[len(closeStateMagic):]
	s := closeState{
		segFirst:   binary.LittleEndian.Uint64(d),
		size:       int64(binary.LittleEndian.Uint64(d[8:])),
		nextSeq:    binary.LittleEndian.Uint64(d[16:]),
		lastEndLSN: change.LSN(binary.LittleEndian.Uint64(d[24:])),
		tailCRC:    binary.LittleEndian.Uint32(d[32:]),
		schemas:    map[uint32]*change.Relation{},
	}
	n := binary.LittleEndian.Uint32(d[36:])
	d = d[40:]
	for range n {
		if len(d) < 4 || uint64(len(d)-4) < uint64(binary.LittleEndian.Uint32(d)) {
			return closeState{}, errors.New("close state truncated")
		}
		l := binary.LittleEndian.Uint32(d)
		rec, err := decodeRecord(d[4:4+l], nil, nil)
		if err != nil || rec.Type != RecordSchema {
			return closeState{}, fmt.Errorf("close state schema: %v", err)
		}
		s.schemas[rec.Relation.OID] = rec.Relation
		d = d[4+l:]
	}
	if len(d) != 0 {
		return closeState{}, errors.New("close state has trailing bytes")
	}
	return s, nil
}

// tailCRC is the checksum of the last min(size, closeTailBytes) bytes of f,
// which must be size bytes long.
func tailCRC(f *os.File, size int64) (uint32, error) {
	n := min(size, closeTailBytes)
	b := make([]byte, n)
	if _, err := f.ReadAt(b, size-n); err != nil {
		return 0, err
	}
	return crc32.Checksum(b, castagnoli), nil
}

// writeCloseState records the state of the active segment after a clean
// Close (synced, no open transaction). Failing to write it only costs the
// next Open a scan, so errors are logged, not returned.
func (w *Writer) writeCloseState() {
	if w.inTx || w.size() != w.safeOff || w.nextSeq != w.safeSeq {
		return
	}
	sum, err := tailCRC(w.f, w.written)
	if err != nil {
		w.log.Warn("trail close state not written", "error", err)
		return
	}
	b := closeState{segFirst: w.segFirst, size: w.written, nextSeq: w.nextSeq, lastEndLSN: w.lastEndLSN,
		tailCRC: sum, schemas: w.schemas}.encode()
	if len(b) > maxCloseState {
		return
	}
	path := filepath.Join(w.dir, closeStateName)
	err = writeFileSync(path+tmpSuffix, b)
	if err == nil {
		err = os.Rename(path+tmpSuffix, path)
	}
	if err != nil {
		_ = os.Remove(path + tmpSuffix)
		w.log.Warn("trail close state not written", "error", err)
	}
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, filePerm)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readCloseState reads the close state. It returns false when there is
// none or it is unreadable (Open then scans, as after a crash).
func readCloseState(dir string) (closeState, bool, error) {
	f, err := os.Open(filepath.Join(dir, closeStateName))
	if errors.Is(err, os.ErrNotExist) {
		return closeState{}, false, nil
	}
	if err != nil {
		return closeState{}, false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCloseState+1))
	if err != nil || len(b) > maxCloseState {
		return closeState{}, false, nil
	}
	s, err := decodeCloseState(b)
	return s, err == nil, nil
}

// dropCloseState removes the close state (and a temporary a crash left),
// durably, before the Writer can append anything: a state left behind
// would describe a segment that has since changed.
func dropCloseState(dir string) error {
	removed := false
	for _, name := range []string{closeStateName, closeStateName + tmpSuffix} {
		err := os.Remove(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		removed = removed || err == nil
	}
	if removed {
		return syncDir(dir)
	}
	return nil
}

// adoptCloseState positions the Writer at the end of the active segment as
// s describes it, when s matches the segment: same segment, same length,
// same bytes at its end, and as many intact frames as s counts. It returns
// false (and leaves the Writer untouched) otherwise.
func (w *Writer) adoptCloseState(s closeState, h header) (bool, error) {
	if s.segFirst != h.firstSeq || s.size < headerSize || s.nextSeq < h.firstSeq {
		return false, nil
	}
	path := filepath.Join(w.dir, segmentName(h.firstSeq))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return false, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Size() != s.size {
		f.Close()
		return false, nil
	}
	if sum, err := tailCRC(f, s.size); err != nil || sum != s.tailCRC {
		f.Close()
		return false, nil
	}
	// Every frame's checksum, without decoding a record: a fraction of
	// the scan's cost, and damage found here leaves the diagnosis (torn
	// tail or corruption) to the scan.
	fr := newFrameReader(f, h.firstSeq)
	off, n := int64(headerSize), uint64(0)
	for off < s.size {
		_, next, err := fr.next(off, s.size)
		if err != nil {
			f.Close()
			if errors.Is(err, errEnd) || errors.Is(err, errTorn) {
				return false, nil
			}
			return false, err
		}
		off, n = next, n+1
	}
	if off != s.size || h.firstSeq+n != s.nextSeq {
		f.Close()
		return false, nil
	}
	// The same sync recovery ends with: cheap when Close synced already.
	if err := w.syncFile(f); err != nil {
		f.Close()
		return false, fmt.Errorf("sync %s: %w", path, err)
	}
	w.f, w.segFirst, w.seed = f, h.firstSeq, crcSeed(h.firstSeq)
	w.schemas = s.schemas
	w.safeOff, w.safeSeq, w.lastEndLSN = s.size, s.nextSeq, s.lastEndLSN
	w.written, w.nextSeq = s.size, s.nextSeq
	return true, nil
}
