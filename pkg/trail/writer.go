package trail

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// Options configures a Writer. The zero value means every default.
type Options struct {
	// SegmentBytes is the size after which Sync rolls over to a new segment,
	// between transactions. A transaction never spans segments, so a segment
	// can grow past it by one transaction. Default 64 MiB: large enough that
	// per-segment costs (a file, a header, re-written schemas, a directory
	// fsync) are negligible, small enough that Purge frees disk promptly.
	SegmentBytes int64
	// SystemID is the source's system identifier (pg_control_system()).
	// Open fails with ErrSystemIDMismatch when both it and the trail's are
	// non-zero and differ. Default 0: unknown, not checked; a new trail then
	// records 0. An existing trail keeps the identifier it was created with.
	SystemID uint64
	// SourceKind is the kind of source writing the trail, "postgres"
	// (pgoutput) or "trigger". Open fails with ErrSystemIDMismatch when an
	// existing trail was written from another kind. Default "postgres".
	SourceKind string
	// BufferBytes is how many encoded bytes are held in memory before they
	// are written to the segment file (independently of Sync, which also
	// writes them). Default 1 MiB: few write system calls per transaction
	// without holding much memory.
	BufferBytes int
	// FirstSeq is the sequence number of a new trail's first record; an
	// existing trail keeps its numbering. Capture under `ack: applied`
	// starts a new trail above every number an earlier trail of the same
	// sinks can have used, so a sink's position from that trail is never
	// mistaken for one in this (apply then resumes by end LSN). Default 1.
	FirstSeq uint64
	// Logger receives recovery and rollover events. Default: discard.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 64 << 20
	}
	if o.BufferBytes <= 0 {
		o.BufferBytes = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Writer appends records to a trail. Its methods are safe for concurrent
// use, but records must come in transaction order from one producer; the
// lock mainly lets Purge, Durable and LastEndLSN be called from elsewhere.
type Writer struct {
	mu   sync.Mutex
	dir  string
	opts Options
	log  *slog.Logger

	systemID   uint64
	sourceKind uint32
	segments   []uint64 // first seqs, ascending; the last is active
	f          *os.File // active segment, opened read-write
	segFirst   uint64
	seed       uint32 // CRC seed of the active segment
	written    int64  // bytes of the active segment already in the file
	buf        []byte // encoded frames not yet written, logically at offset written
	dirty      bool   // written since the last fsync
	// dataOff is where the active segment's own records begin, after the
	// re-written schemas: a segment holding nothing more is never rolled
	// over, or idle Syncs with many relations and a small SegmentBytes
	// would create empty segments forever.
	dataOff int64

	nextSeq    uint64
	safeOff    int64  // end of the last record outside a transaction
	safeSeq    uint64 // seq following it
	lastEndLSN change.LSN
	tx         openTx // valid while inTx; reused to save an allocation per transaction
	inTx       bool
	schemas    map[uint32]*change.Relation

	durable    atomic.Pointer[Position]
	durableEnd atomic.Uint64
	// gen is a seqlock over rollbacks: odd while one is cutting bytes
	// off, bumped twice by each. Speculative readers (ReaderOptions.
	// Speculate) compare it to know that what they read past the durable
	// position still stands.
	gen       atomic.Uint64
	changedMu sync.Mutex
	changed   chan struct{} // closed by the next publish; nil until asked for

	// asyncSyncs counts marks handed out by Flush and not yet synced. A
	// segment rolled over while some are pending is synced by the rollover
	// itself but only closed (retired) once they have all completed, so a
	// syncer that is never idle cannot postpone rollover forever.
	asyncSyncs int
	retired    []*os.File

	err    error // sticky: the first write, truncate or fsync failure
	closed bool

	// syncFile is fdatasync; tests replace it to inject failures.
	syncFile func(*os.File) error
}

// openTx is the state needed to undo an open transaction.
type openTx struct {
	xid  uint32
	off  int64
	seq  uint64
	undo []schemaUndo // schema map entries replaced inside the transaction
}

type schemaUndo struct {
	oid  uint32
	prev *change.Relation
}

// LastEndLSN is the EndLSN of the last durable (synced) COMMIT in the trail,
// 0 when there is none: capture resumes and acknowledges from here.
func (w *Writer) LastEndLSN() change.LSN { return change.LSN(w.durableEnd.Load()) }

// SystemID is the trail's source system identifier (0 when unknown).
func (w *Writer) SystemID() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.systemID
}

// NextSeq is the sequence number the next record will get.
func (w *Writer) NextSeq() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nextSeq
}

// Durable is the position up to which the trail is synced and holds no open
// transaction. Pass it as ReaderOptions.Limit to in-process readers. It is a
// lock-free load, cheap enough to call for every record read.
func (w *Writer) Durable() Position { return *w.durable.Load() }

// Begin writes the BEGIN record of a source transaction (XID, FinalLSN,
// CommitTime; Origin too when already known).
func (w *Writer) Begin(tx *change.Tx) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if w.inTx {
		return fmt.Errorf("trail begin xid %d: transaction %d is still open", tx.XID, w.tx.xid)
	}
	w.tx = openTx{xid: tx.XID, off: w.size(), seq: w.nextSeq, undo: w.tx.undo[:0]}
	w.inTx = true
	start := w.startFrame()
	w.buf = appendTx(w.buf, RecordBegin, w.nextSeq, tx)
	return w.endFrame(start)
}

// Schema writes a SCHEMA record and makes rel the relation later changes to
// its OID resolve to. Inside a transaction it is part of the transaction (and
// undone by Rollback); outside it stands alone. Relations must not be modified
// after being passed: pass a new one for a new schema.
func (w *Writer) Schema(rel *change.Relation) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if err := w.writeSchema(rel); err != nil {
		return err
	}
	w.markSafe()
	return nil
}

// Change writes a CHANGE record (insert, update, delete, truncate) or, for
// OpMessage, a MESSAGE record. Data changes and transactional messages need
// an open transaction; a non-transactional message may stand alone (inside a
// transaction it becomes part of it, and a Rollback drops it). A
// relation the writer has not written yet (or a new Relation value with a
// different schema) gets a SCHEMA record first, so a trail is never missing
// the schema of a change.
func (w *Writer) Change(c *change.Change) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if err := validateChange(c); err != nil {
		return fmt.Errorf("trail change: %w", err)
	}
	if !w.inTx && (c.Op != change.OpMessage || c.Message.Transactional) {
		return fmt.Errorf("trail change: %s outside a transaction", c.Op)
	}
	switch c.Op {
	case change.OpInsert, change.OpUpdate, change.OpDelete:
		if err := w.ensureSchema(c.Relation); err != nil {
			return err
		}
	case change.OpTruncate:
		for _, r := range c.Truncate.Relations {
			if err := w.ensureSchema(r); err != nil {
				return err
			}
		}
	}
	start := w.startFrame()
	w.buf = appendChange(w.buf, w.nextSeq, c)
	if err := w.endFrame(start); err != nil {
		return err
	}
	w.markSafe()
	return nil
}

// Commit writes the COMMIT record (XID, CommitLSN, EndLSN, CommitTime,
// Origin) that closes the open transaction. It does not sync: call Sync once
// per batch of commits (group commit) before acknowledging any of them.
func (w *Writer) Commit(tx *change.Tx) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if !w.inTx {
		return fmt.Errorf("trail commit xid %d: no open transaction", tx.XID)
	}
	if tx.XID != w.tx.xid {
		return fmt.Errorf("trail commit xid %d: open transaction is %d", tx.XID, w.tx.xid)
	}
	start := w.startFrame()
	w.buf = appendTx(w.buf, RecordCommit, w.nextSeq, tx)
	if err := w.endFrame(start); err != nil {
		return err
	}
	w.inTx = false
	w.lastEndLSN = tx.EndLSN
	w.markSafe()
	return nil
}

// Sync is the group commit: it writes buffered records, fdatasyncs the
// segment and returns the EndLSN of the last durable COMMIT — the position
// capture may acknowledge. Between transactions, once the segment has reached
// SegmentBytes, it then rolls over to a new segment. Syncing inside a
// transaction is allowed but does not make the open transaction visible to
// Limit-bounded readers.
func (w *Writer) Sync() (change.LSN, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return 0, err
	}
	if err := w.syncActive(); err != nil {
		return 0, err
	}
	if w.full() {
		if err := w.rollover(); err != nil {
			return 0, err
		}
	}
	return w.LastEndLSN(), nil
}

// Rollback drops the open transaction — the source disconnected before its
// COMMIT — cutting the segment back to where the transaction began (even
// when part of it was already written to the file) and restoring the schema
// map. Without an open transaction it does nothing.
func (w *Writer) Rollback() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	return w.rollback()
}

func (w *Writer) rollback() error {
	if !w.inTx {
		return nil
	}
	w.gen.Add(1)
	defer w.gen.Add(1)
	tx := &w.tx
	if tx.off >= w.written {
		w.buf = w.buf[:tx.off-w.written]
	} else {
		w.buf = w.buf[:0]
		if err := w.f.Truncate(tx.off); err != nil {
			return w.fail(fmt.Errorf("trail rollback: truncate: %w", err))
		}
		w.written = tx.off
		w.dirty = true // the truncation must reach the disk with the next sync
	}
	w.nextSeq = tx.seq
	for _, u := range slices.Backward(tx.undo) {
		if u.prev == nil {
			delete(w.schemas, u.oid)
		} else {
			w.schemas[u.oid] = u.prev
		}
	}
	w.inTx = false
	return nil
}

// Purge deletes whole segments all of whose records have seq < below (call
// it with the lowest checkpoint of all readers). The active segment is never
// deleted. It returns the number of segments removed.
func (w *Writer) Purge(below uint64) (removed int, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	// A segment's records end where the next segment begins.
	for len(w.segments) > 1 && w.segments[1] <= below {
		path := filepath.Join(w.dir, segmentName(w.segments[0]))
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("trail purge: %w", err)
			if removed > 0 {
				err = errors.Join(err, syncDir(w.dir))
			}
			return removed, err
		}
		w.log.Info("trail segment purged", "segment", path)
		w.segments = w.segments[1:]
		removed++
	}
	if removed > 0 {
		if err := syncDir(w.dir); err != nil {
			return removed, fmt.Errorf("trail purge: %w", err)
		}
	}
	return removed, nil
}

// Close drops an open transaction (a partial transaction is never
// acknowledged anyway), syncs, and closes the segment. After a sticky error
// it only closes the file and returns that error.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	w.closed = true
	err := w.err
	if err == nil {
		err = w.rollback()
	}
	if err == nil {
		err = w.syncActive()
	}
	if err == nil {
		w.writeCloseState()
	}
	if cerr := w.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("trail close: %w", cerr)
	}
	w.closeRetired()
	return err
}

// full reports whether the active segment should be rolled over now: it has
// reached SegmentBytes, holds records of its own, and no transaction is open.
func (w *Writer) full() bool {
	return !w.inTx && w.size() >= w.opts.SegmentBytes && w.size() > w.dataOff
}

func (w *Writer) closeRetired() {
	for _, f := range w.retired {
		if err := f.Close(); err != nil {
			w.log.Warn("close sealed trail segment", "error", err)
		}
	}
	w.retired = w.retired[:0]
}

func (w *Writer) usable() error {
	if w.closed {
		return ErrClosed
	}
	return w.err
}

// fail records a sticky error: after a failed write or fsync the state of the
// file is unknown, so the only safe continuation is to reopen and recover.
func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
		w.log.Error("trail writer failed; reopen to recover", "error", err)
	}
	return w.err
}

// size is the logical size of the active segment.
func (w *Writer) size() int64 { return w.written + int64(len(w.buf)) }

// markSafe records that everything written so far is outside any transaction.
func (w *Writer) markSafe() {
	if !w.inTx {
		w.safeOff, w.safeSeq = w.size(), w.nextSeq
	}
}

// startFrame reserves a frame header in buf and returns its start.
func (w *Writer) startFrame() int {
	start := len(w.buf)
	w.buf = append(w.buf, 0, 0, 0, 0, 0, 0, 0, 0)
	return start
}

// endFrame fills in the frame header of the payload appended since start,
// pads it, assigns the seq, and writes buf out once it is large.
func (w *Writer) endFrame(start int) error {
	payload := w.buf[start+frameHeader:]
	if len(payload) > maxPayloadSize {
		w.buf = w.buf[:start]
		return fmt.Errorf("trail record of %d bytes exceeds the %d-byte limit", len(payload), maxPayloadSize)
	}
	putFrameHeader(w.buf[start:], w.seed, payload)
	for len(w.buf)%8 != 0 {
		w.buf = append(w.buf, 0)
	}
	w.nextSeq++
	if len(w.buf) >= w.opts.BufferBytes {
		return w.flush()
	}
	return nil
}

// flush writes buf to the segment file (without syncing).
func (w *Writer) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if _, err := w.f.WriteAt(w.buf, w.written); err != nil {
		return w.fail(fmt.Errorf("trail write %s: %w", w.f.Name(), err))
	}
	w.written += int64(len(w.buf))
	w.dirty = true
	if cap(w.buf) > 4*w.opts.BufferBytes {
		w.buf = make([]byte, 0, w.opts.BufferBytes+w.opts.BufferBytes/4) // after a huge record
	} else {
		w.buf = w.buf[:0]
	}
	return nil
}

// syncActive flushes and fsyncs the active segment, then publishes the new
// durable position: the end of the last record outside a transaction.
func (w *Writer) syncActive() error {
	if err := w.flush(); err != nil {
		return err
	}
	if w.dirty {
		if err := w.syncFile(w.f); err != nil {
			return w.fail(fmt.Errorf("trail sync %s: %w", w.f.Name(), err))
		}
		w.dirty = false
	}
	w.publish()
	return nil
}

func (w *Writer) publish() {
	w.durable.Store(&Position{Seq: w.safeSeq, Segment: w.segFirst, Offset: w.safeOff})
	w.durableEnd.Store(uint64(w.lastEndLSN))
	w.notify()
}

// Generation changes whenever a rollback cuts records off the trail; it is
// odd while one is in progress, and never 0 or 1. Pass it as
// ReaderOptions.Speculate.
func (w *Writer) Generation() uint64 { return w.gen.Load() }

// Changed returns a channel closed the next time the durable position
// moves: pass it as ReaderOptions.Wake so in-process readers wake at once.
func (w *Writer) Changed() <-chan struct{} {
	w.changedMu.Lock()
	defer w.changedMu.Unlock()
	if w.changed == nil {
		w.changed = make(chan struct{})
	}
	return w.changed
}

func (w *Writer) notify() {
	w.changedMu.Lock()
	if w.changed != nil {
		close(w.changed)
		w.changed = nil
	}
	w.changedMu.Unlock()
}

// writeSchema appends a SCHEMA record and updates the schema map.
func (w *Writer) writeSchema(rel *change.Relation) error {
	for _, k := range rel.PrimaryKey {
		if k < 0 || k >= len(rel.Columns) {
			return fmt.Errorf("trail schema %s: primary key column %d out of range", rel.QualifiedName(), k)
		}
	}
	start := w.startFrame()
	w.buf = appendSchema(w.buf, w.nextSeq, rel)
	if err := w.endFrame(start); err != nil {
		return err
	}
	if w.inTx {
		w.tx.undo = append(w.tx.undo, schemaUndo{oid: rel.OID, prev: w.schemas[rel.OID]})
	}
	w.schemas[rel.OID] = rel
	return nil
}

// ensureSchema writes rel's SCHEMA unless the trail already holds it. The
// pointer comparison is the hot path: decoders hand out one *Relation per
// Relation message.
func (w *Writer) ensureSchema(rel *change.Relation) error {
	known := w.schemas[rel.OID]
	if known == rel {
		return nil
	}
	if known != nil && sameRelation(known, rel) {
		w.schemas[rel.OID] = rel // same schema, new value: remember the pointer
		return nil
	}
	return w.writeSchema(rel)
}

func sameRelation(a, b *change.Relation) bool {
	return a.OID == b.OID && a.Schema == b.Schema && a.Name == b.Name &&
		a.ReplicaIdentity == b.ReplicaIdentity &&
		slices.Equal(a.Columns, b.Columns) && slices.Equal(a.PrimaryKey, b.PrimaryKey)
}
