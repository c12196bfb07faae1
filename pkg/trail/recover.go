package trail

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// Open opens the trail in dir for appending, creating dir and a first
// segment when missing. It recovers from a crash first: every segment header
// is checked, and a torn or invalid tail of the active segment — including a
// transaction without its COMMIT — is cut off (copied to "<segment>.broken").
// Damage followed by an intact COMMIT is not a torn tail: Open then returns
// a *CorruptError naming the segment and offset and changes nothing (see
// doc.go, "Torn tail or corruption"). The Writer is then positioned at the
// end, with LastEndLSN the EndLSN of the last complete transaction.
func Open(dir string, opts Options) (*Writer, error) {
	opts = opts.withDefaults()
	w := &Writer{
		dir:      dir,
		opts:     opts,
		log:      opts.Logger.With("trail", dir),
		schemas:  make(map[uint32]*change.Relation),
		syncFile: fdatasync,
	}
	// Generations start at 2: a caller without a writer yet can report
	// 1 (odd, "unstable") to hold speculative readers back.
	w.gen.Store(2)
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return nil, fmt.Errorf("open trail: %w", err)
	}
	if err := w.checkDirPerm(); err != nil {
		return nil, fmt.Errorf("open trail: %w", err)
	}
	if err := removeTemporaries(dir); err != nil {
		return nil, fmt.Errorf("open trail: %w", err)
	}
	seqs, err := listSegments(dir)
	if err != nil {
		return nil, fmt.Errorf("open trail: %w", err)
	}
	kind, err := sourceKindCode(opts.SourceKind)
	if err != nil {
		return nil, fmt.Errorf("open trail: %w", err)
	}
	if len(seqs) == 0 {
		w.systemID, w.sourceKind, w.nextSeq = opts.SystemID, kind, max(opts.FirstSeq, 1)
		if err := w.startSegment(); err != nil {
			return nil, fmt.Errorf("open trail: create first segment: %w", err)
		}
		w.log.Info("trail created", "system_id", w.systemID, "source", sourceKindName(w.sourceKind))
		return w, nil
	}

	var last header
	for i, s := range seqs {
		f, h, err := openSegment(filepath.Join(dir, segmentName(s)), s)
		if err != nil {
			return nil, fmt.Errorf("open trail: %w", err)
		}
		f.Close()
		if i == 0 {
			w.systemID, w.sourceKind = h.systemID, h.sourceKind
		} else if h.systemID != w.systemID {
			return nil, fmt.Errorf("open trail: %w", &CorruptError{File: f.Name(), Offset: 16,
				Reason: fmt.Sprintf("system identifier %d differs from the older segments' %d", h.systemID, w.systemID)})
		}
		last = h
	}
	if w.sourceKind != kind {
		return nil, fmt.Errorf("open trail %s: written from a %s source, opened for a %s source: %w",
			dir, sourceKindName(w.sourceKind), sourceKindName(kind), ErrSystemIDMismatch)
	}
	if opts.SystemID != 0 && w.systemID != 0 && opts.SystemID != w.systemID {
		return nil, fmt.Errorf("open trail %s: source system %d, trail written for %d: %w",
			dir, opts.SystemID, w.systemID, ErrSystemIDMismatch)
	}
	w.segments = seqs
	cs, ok, err := readCloseState(dir)
	if err != nil {
		return nil, fmt.Errorf("open trail: %w", err)
	}
	if ok {
		if ok, err = w.adoptCloseState(cs, last); err != nil {
			return nil, fmt.Errorf("open trail: %w", err)
		}
	}
	if !ok {
		if err := w.recoverTail(last); err != nil {
			if w.f != nil {
				w.f.Close()
			}
			return nil, fmt.Errorf("open trail: %w", err)
		}
	}
	if err := dropCloseState(dir); err != nil {
		w.f.Close()
		return nil, fmt.Errorf("open trail: %w", err)
	}
	w.publish()
	w.log.Info("trail opened", "segments", len(seqs), "next_seq", w.nextSeq, "last_end_lsn", w.lastEndLSN, "scanned", !ok)
	return w, nil
}

// recoverTail scans the active segment, cuts off anything after the last
// complete transaction or stand-alone record, and adopts the state found:
// next seq, last EndLSN and the schema map (the segment starts with the
// re-written schema of every known relation).
func (w *Writer) recoverTail(h header) error {
	path := filepath.Join(w.dir, segmentName(h.firstSeq))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	w.f, w.segFirst, w.seed = f, h.firstSeq, crcSeed(h.firstSeq)

	var (
		fr      = newFrameReader(f, h.firstSeq)
		off     = int64(headerSize)
		seq     = h.firstSeq
		lastEnd = h.prevEndLSN
		inTx    bool
		undo    []schemaUndo
		reason  string
	)
	w.safeOff, w.safeSeq, w.lastEndLSN = off, seq, lastEnd
scan:
	for {
		p, next, err := fr.next(off, -1)
		switch {
		case errors.Is(err, errEnd):
			break scan
		case errors.Is(err, errTorn):
			reason = fr.reason
			break scan
		case err != nil:
			return err
		}
		rec, err := recoverRecord(p, w.schemas)
		switch {
		case err != nil:
			reason = err.Error()
		case rec.Seq != seq:
			reason = fmt.Sprintf("record seq %d, want %d", rec.Seq, seq)
		case rec.Type == RecordBegin && inTx:
			reason = "BEGIN inside a transaction"
		case (rec.Type == RecordCommit || rec.Type == RecordChange) && !inTx:
			reason = rec.Type.String() + " outside a transaction"
		}
		if reason != "" {
			break scan
		}
		switch rec.Type {
		case RecordSchema:
			if inTx {
				undo = append(undo, schemaUndo{oid: rec.Relation.OID, prev: w.schemas[rec.Relation.OID]})
			}
			w.schemas[rec.Relation.OID] = rec.Relation
		case RecordBegin:
			inTx = true
		case RecordCommit:
			inTx, undo, lastEnd = false, undo[:0], rec.Tx.EndLSN
		}
		seq++
		off = next
		if !inTx {
			w.safeOff, w.safeSeq, w.lastEndLSN = off, seq, lastEnd
		}
	}
	for _, u := range slices.Backward(undo) {
		if u.prev == nil {
			delete(w.schemas, u.oid)
		} else {
			w.schemas[u.oid] = u.prev
		}
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if reason != "" {
		// A crash can only damage what the last sync did not cover, and
		// an intact COMMIT after the damage means it hit data that may
		// have been acknowledged. Refuse, and leave the file as it is for
		// the operator.
		if err := notTorn(f, path, st.Size(), h.firstSeq, off, seq, reason); err != nil {
			return err
		}
	}
	if inTx && reason == "" {
		reason = "transaction without COMMIT"
	}
	w.written, w.nextSeq = w.safeOff, w.safeSeq

	if st.Size() > w.safeOff {
		if err := w.cutTail(path, st.Size(), reason); err != nil {
			return err
		}
	}
	// Make whatever an earlier process wrote but did not sync durable before
	// reporting it as LastEndLSN.
	if err := w.syncFile(f); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// recoverRecord decodes what recovery needs: SCHEMA, BEGIN and COMMIT fully,
// the type and seq of the rest (their checksum already vouches for them, and
// decoding every row would slow down startup).
func recoverRecord(p []byte, rels map[uint32]*change.Relation) (Record, error) {
	t, seq, err := peekRecord(p)
	if err != nil {
		return Record{}, err
	}
	switch t {
	case RecordSchema, RecordBegin, RecordCommit:
		return decodeRecord(p, rels, nil)
	case RecordChange, RecordMessage:
		return Record{Type: t, Seq: seq}, nil
	}
	return Record{}, fmt.Errorf("unknown record type %d", t)
}

// cutTail copies the bytes after safeOff to a .broken file, then truncates
// the segment there. The copy is synced first so that the evidence is not
// lost if we crash between the two.
func (w *Writer) cutTail(path string, size int64, reason string) error {
	broken, err := createBroken(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(broken, io.NewSectionReader(w.f, w.safeOff, size-w.safeOff))
	if err == nil {
		err = broken.Sync()
	}
	if cerr := broken.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("save broken tail of %s: %w", path, err)
	}
	if err := w.f.Truncate(w.safeOff); err != nil {
		return fmt.Errorf("truncate %s: %w", path, err)
	}
	if err := syncDir(w.dir); err != nil {
		return err
	}
	w.log.Warn("trail tail cut off: not a complete transaction",
		"segment", path, "offset", w.safeOff, "bytes", size-w.safeOff, "reason", reason,
		"saved_to", broken.Name(), "next_seq", w.nextSeq, "last_end_lsn", w.lastEndLSN)
	return nil
}

// createBroken creates "<path>.broken", or ".broken.N" when earlier ones
// exist: each is evidence of a separate crash.
func createBroken(path string) (*os.File, error) {
	for i := 0; ; i++ {
		name := path + brokenSuffix
		if i > 0 {
			name = fmt.Sprintf("%s.%d", name, i)
		}
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
		if !errors.Is(err, os.ErrExist) {
			return f, err
		}
	}
}

// checkDirPerm warns when the trail directory is open to other users: the
// trail holds every captured row. An existing directory's mode is the
// operator's choice (a backup agent's group, say), so it is never changed —
// only created 0700 — and never widened.
func (w *Writer) checkDirPerm() error {
	st, err := os.Stat(w.dir)
	if err != nil {
		return fmt.Errorf("stat trail directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", w.dir)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		w.log.Warn("trail directory is accessible to other users; it holds every captured row: chmod 700 it",
			"mode", fmt.Sprintf("%04o", perm))
	}
	return nil
}

// removeTemporaries deletes segments whose creation a crash interrupted:
// they were never renamed into place, so they hold nothing acknowledged.
func removeTemporaries(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	removed := false
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), segmentSuffix+tmpSuffix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
			removed = true
		}
	}
	if removed {
		return syncDir(dir)
	}
	return nil
}

// rollover seals the active segment (already synced) and starts a new one.
func (w *Writer) rollover() error {
	old := w.f
	if err := w.startSegment(); err != nil {
		return w.fail(fmt.Errorf("trail rollover: %w", err))
	}
	w.retired = append(w.retired, old)
	if w.asyncSyncs == 0 {
		w.closeRetired()
	}
	w.log.Info("trail segment started", "first_seq", w.segFirst, "schemas", len(w.schemas))
	return nil
}

// startSegment creates the segment for w.nextSeq: header plus the latest
// SCHEMA of every known relation, written to a temporary file, fsynced,
// renamed into place and the directory fsynced, so the segment appears
// complete or not at all. It leaves the Writer positioned at its end.
func (w *Writer) startSegment() error {
	first := w.nextSeq
	path := filepath.Join(w.dir, segmentName(first))
	f, err := os.OpenFile(path+tmpSuffix, os.O_RDWR|os.O_CREATE|os.O_TRUNC, filePerm)
	if err != nil {
		return err
	}
	// O_CREATE's mode does not apply to a file that already exists (a
	// leftover temporary of a crashed older version): set it explicitly.
	if err := f.Chmod(filePerm); err != nil {
		f.Close()
		return fmt.Errorf("restrict %s: %w", f.Name(), err)
	}
	w.f, w.segFirst, w.seed, w.written = f, first, crcSeed(first), 0
	w.buf = append(w.buf[:0], header{systemID: w.systemID, firstSeq: first, prevEndLSN: w.lastEndLSN, sourceKind: w.sourceKind}.encode()...)
	for _, oid := range slices.Sorted(maps.Keys(w.schemas)) {
		start := w.startFrame()
		w.buf = appendSchema(w.buf, w.nextSeq, w.schemas[oid])
		if err := w.endFrame(start); err != nil {
			return err
		}
	}
	w.dataOff = w.size()
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.syncFile(f); err != nil {
		return fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	w.dirty = false
	if err := os.Rename(path+tmpSuffix, path); err != nil {
		return err
	}
	// Reopen under the final name so that error messages name the real file.
	if w.f, err = os.OpenFile(path, os.O_RDWR, 0); err != nil {
		f.Close()
		return err
	}
	f.Close()
	if err := syncDir(w.dir); err != nil {
		return err
	}
	w.segments = append(w.segments, first)
	w.markSafe()
	w.publish()
	return nil
}
