package trail

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// On-disk constants; doc.go describes the layout they implement.
const (
	segmentMagic   = "cdcdtrl\x00"
	formatVersion  = 1
	headerSize     = 48
	frameHeader    = 8
	segmentSuffix  = ".trail"
	tmpSuffix      = ".tmp"
	brokenSuffix   = ".broken"
	maxPayloadSize = math.MaxUint32

	// dirPerm and filePerm are the modes of everything the trail creates:
	// owner only, since the trail holds every captured row. They are
	// explicit modes, which a umask can only narrow.
	dirPerm  = 0o700
	filePerm = 0o600
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Sentinel errors. Test for them with errors.Is: they are always wrapped.
var (
	// ErrCorrupt is matched by every *CorruptError: damaged bytes in a sealed
	// segment, below a reader's Limit, or in a segment header. It is terminal:
	// restoring the trail needs an operator (or re-capturing from the source).
	ErrCorrupt = errors.New("trail corrupt")
	// ErrSystemIDMismatch is returned by Open when the trail was written for
	// a different source system identifier than Options.SystemID: continuing
	// it would mix two databases' histories.
	ErrSystemIDMismatch = errors.New("trail belongs to a different source system")
	// ErrPurged is returned by NewReader when the requested sequence number
	// lies below the oldest segment: those records were purged and a reader
	// starting there would silently skip data.
	ErrPurged = errors.New("trail records purged")
	// ErrClosed is returned by a Writer or Reader used after Close.
	ErrClosed = errors.New("trail closed")
)

// CorruptError reports damaged trail data at a byte offset of a file.
type CorruptError struct {
	// File is the path of the damaged segment.
	File string
	// Offset is the byte offset of the damaged header or record frame.
	Offset int64
	// Reason says what check failed.
	Reason string
}

// Error names the file and offset so an operator can find the damage.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("trail corrupt: %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true for every CorruptError.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// RecordType is the kind of a trail record.
type RecordType uint8

// The record types, numbered as on disk.
const (
	RecordSchema  RecordType = 1 // a relation's schema (change.Relation)
	RecordBegin   RecordType = 2 // start of a source transaction
	RecordChange  RecordType = 3 // insert, update, delete or truncate
	RecordMessage RecordType = 4 // logical decoding message
	RecordCommit  RecordType = 5 // end of a source transaction; carries EndLSN
)

var recordTypeNames = [...]string{"?", "SCHEMA", "BEGIN", "CHANGE", "MESSAGE", "COMMIT"}

// String returns the record type's upper-case name, as in the format docs.
func (t RecordType) String() string {
	if int(t) < len(recordTypeNames) {
		return recordTypeNames[t]
	}
	return fmt.Sprintf("RecordType(%d)", uint8(t))
}

// Record is one decoded trail record. Exactly one of Tx, Relation and Change
// is set, according to Type.
type Record struct {
	Type RecordType
	// Seq is the record's sequence number: contiguous across the trail, the
	// unit of reader checkpoints and of Purge.
	Seq uint64
	// Tx is set for BEGIN and COMMIT.
	Tx *change.Tx
	// Relation is set for SCHEMA.
	Relation *change.Relation
	// Change is set for CHANGE and MESSAGE (Op OpMessage). Its Relation (and
	// Truncate.Relations) point to the latest SCHEMA read for that OID; those
	// Relations are shared between records and must not be modified. Value
	// data aliases memory the Reader shares between neighbouring records
	// but never reuses: a record stays valid as long as it is kept.
	Change *change.Change
}

// Position is a point in the trail: records with Seq below Position.Seq lie
// before it. Segment and Offset locate the same point on disk (the first seq
// of its segment and the byte offset in it), which lets a reader bounded by
// Writer.Durable avoid even reading bytes past it.
type Position struct {
	// Seq is the sequence number of the first record not included.
	Seq uint64
	// Segment is the first seq (the name) of the segment holding Seq.
	Segment uint64
	// Offset is the byte offset in Segment where record Seq begins.
	Offset int64
}

// header is a decoded segment header.
type header struct {
	systemID   uint64
	firstSeq   uint64
	prevEndLSN change.LSN
	sourceKind uint32
}

// Source kinds in the header (offset 40). 0 is also what trails written
// before the field existed hold: they all came from pgoutput.
const (
	sourcePostgres uint32 = 0
	sourceTrigger  uint32 = 1
)

// sourceKindCode maps Options.SourceKind to its header code.
func sourceKindCode(kind string) (uint32, error) {
	switch kind {
	case "", "postgres":
		return sourcePostgres, nil
	case "trigger":
		return sourceTrigger, nil
	}
	return 0, fmt.Errorf("unknown source kind %q", kind)
}

// sourceKindName is the Options.SourceKind a header code stands for.
func sourceKindName(code uint32) string {
	switch code {
	case sourcePostgres:
		return "postgres"
	case sourceTrigger:
		return "trigger"
	}
	return fmt.Sprintf("unknown(%d)", code)
}

func (h header) encode() []byte {
	b := make([]byte, headerSize)
	copy(b, segmentMagic)
	binary.LittleEndian.PutUint16(b[8:], formatVersion)
	binary.LittleEndian.PutUint16(b[10:], headerSize)
	binary.LittleEndian.PutUint64(b[16:], h.systemID)
	binary.LittleEndian.PutUint64(b[24:], h.firstSeq)
	binary.LittleEndian.PutUint64(b[32:], uint64(h.prevEndLSN))
	binary.LittleEndian.PutUint32(b[40:], h.sourceKind)
	binary.LittleEndian.PutUint32(b[44:], crc32.Checksum(b[:44], castagnoli))
	return b
}

// decodeHeader checks and decodes a segment header; the error is a reason for
// a CorruptError.
func decodeHeader(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, errors.New("short segment header")
	}
	if string(b[:8]) != segmentMagic {
		return header{}, errors.New("bad segment magic")
	}
	if got, want := binary.LittleEndian.Uint32(b[44:]), crc32.Checksum(b[:44], castagnoli); got != want {
		return header{}, fmt.Errorf("segment header checksum %08x, want %08x", got, want)
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != formatVersion {
		return header{}, fmt.Errorf("unsupported format version %d", v)
	}
	if n := binary.LittleEndian.Uint16(b[10:]); n != headerSize {
		return header{}, fmt.Errorf("unsupported header size %d", n)
	}
	return header{
		systemID:   binary.LittleEndian.Uint64(b[16:]),
		firstSeq:   binary.LittleEndian.Uint64(b[24:]),
		prevEndLSN: change.LSN(binary.LittleEndian.Uint64(b[32:])),
		sourceKind: binary.LittleEndian.Uint32(b[40:]),
	}, nil
}

// crcSeed is the CRC-32C state after the segment's first seq, the prefix every
// record checksum of that segment starts from.
func crcSeed(firstSeq uint64) uint32 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], firstSeq)
	return crc32.Update(0, castagnoli, b[:])
}

// frameCRC is the checksum of one frame: seed ‖ length ‖ payload. The length
// is passed as the frame's own 4 header bytes, so nothing escapes to the heap.
func frameCRC(seed uint32, length, payload []byte) uint32 {
	return crc32.Update(crc32.Update(seed, castagnoli, length[:4]), castagnoli, payload)
}

// padded is the on-disk size of a frame with an n-byte payload.
func padded(n int64) int64 { return frameHeader + (n+7)&^7 }

// segmentName is the file name of the segment starting at firstSeq.
func segmentName(firstSeq uint64) string { return fmt.Sprintf("%020d%s", firstSeq, segmentSuffix) }

// putFrameHeader writes the length and checksum of payload into b[:8].
func putFrameHeader(b []byte, seed uint32, payload []byte) {
	binary.LittleEndian.PutUint32(b, uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[4:], frameCRC(seed, b[:4], payload))
}
