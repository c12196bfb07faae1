package postgres

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/decode"
)

// The spool holds the segments of in-progress transactions that the server
// streams (protocol v2) until their Stream Commit, when they are replayed
// as one ordinary transaction, or their Stream Abort, when they are
// dropped. Memory stays bounded: a transaction keeps its messages in memory
// up to spoolTxMemBytes, and all of them together up to spoolMemBytes;
// beyond that a transaction's messages go to a file of its own in the spool
// directory, written through a small buffer and read back sequentially.
//
// A spool lives as long as one replication session. Nothing in it was ever
// acknowledged (a streamed transaction's position is its commit's end LSN),
// so after a crash or reconnect the server streams the open transactions
// again from their first segment; files left by an earlier session are
// deleted when the next one spools.
//
// Record layout (memory and file alike), all integers big-endian:
//
//	Uint32 n, Uint32 xid (the subtransaction's), Uint64 WAL start, n bytes message (type byte, fields after the xid)
const (
	spoolTxMemBytes = 1 << 20
	spoolMemBytes   = 16 << 20
	spoolHeader     = 16
	spoolBufBytes   = 256 << 10
)

// spool holds the open streamed transactions of one session.
type spool struct {
	dir string // where spill files go; made on the first spill
	// tmp marks a directory the spool made itself (no directory was
	// configured): removed on close.
	tmp      bool
	txs      map[uint32]*spoolTx
	memBytes int // bytes held in memory by all transactions
	cleaned  bool
	// SpilledBytes counts bytes written to spill files in this session.
	spilledBytes int64
}

// spoolTx is one open streamed transaction.
type spoolTx struct {
	xid     uint32
	mem     []byte // records, while the transaction is in memory
	f       *os.File
	w       *bufio.Writer
	bytes   int64               // record bytes spooled
	aborted map[uint32]struct{} // aborted subtransactions
	records int
}

func newSpool(dir string) *spool {
	return &spool{dir: dir, txs: make(map[uint32]*spoolTx)}
}

// open reports how many streamed transactions are open.
func (s *spool) open() int { return len(s.txs) }

// records is how many data messages open transaction xid has spooled.
func (s *spool) records(xid uint32) int {
	if tx, ok := s.txs[xid]; ok {
		return tx.records
	}
	return 0
}

// start opens xid at its first segment (dropping what an earlier stream of
// it left: the server restarts a transaction only from its beginning).
func (s *spool) start(xid uint32, first bool) error {
	if tx, ok := s.txs[xid]; ok {
		if !first {
			return nil
		}
		s.drop(tx)
	}
	s.txs[xid] = &spoolTx{xid: xid}
	return nil
}

// add appends one data message of top-level transaction top.
func (s *spool) add(top uint32, walStart change.LSN, st *decode.Stream) error {
	tx, ok := s.txs[top]
	if !ok {
		return fmt.Errorf("spool: data for streamed transaction %d without its first Stream Start", top)
	}
	n := spoolHeader + 1 + len(st.Body)
	if tx.f == nil && (len(tx.mem)+n > spoolTxMemBytes || s.memBytes+n > spoolMemBytes) {
		if err := s.spill(tx); err != nil {
			return err
		}
	}
	var hdr [spoolHeader + 1]byte
	binary.BigEndian.PutUint32(hdr[0:], uint32(1+len(st.Body)))
	binary.BigEndian.PutUint32(hdr[4:], st.XID)
	binary.BigEndian.PutUint64(hdr[8:], uint64(walStart))
	hdr[spoolHeader] = st.Type
	tx.bytes += int64(n)
	tx.records++
	if tx.f == nil {
		tx.mem = append(append(tx.mem, hdr[:]...), st.Body...)
		s.memBytes += n
		return nil
	}
	s.spilledBytes += int64(n)
	if _, err := tx.w.Write(hdr[:]); err != nil {
		return spoolErr(tx, err)
	}
	if _, err := tx.w.Write(st.Body); err != nil {
		return spoolErr(tx, err)
	}
	return nil
}

// spill moves tx's records to a file of its own.
func (s *spool) spill(tx *spoolTx) error {
	if err := s.prepareDir(); err != nil {
		return err
	}
	f, err := os.CreateTemp(s.dir, fmt.Sprintf("xid-%d-*.spool", tx.xid))
	if err != nil {
		return fmt.Errorf("spool streamed transaction %d: %w (set source.spool_dir to a directory with room)", tx.xid, err)
	}
	tx.f, tx.w = f, bufio.NewWriterSize(f, spoolBufBytes)
	if _, err := tx.w.Write(tx.mem); err != nil {
		return spoolErr(tx, err)
	}
	s.spilledBytes += int64(len(tx.mem))
	s.memBytes -= len(tx.mem)
	tx.mem = nil
	return nil
}

// prepareDir makes the spool directory and removes an earlier session's
// files, once per session.
func (s *spool) prepareDir() error {
	if s.cleaned {
		return nil
	}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "cdcd-spool-")
		if err != nil {
			return fmt.Errorf("make spool directory: %w", err)
		}
		s.dir, s.tmp = d, true
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("make spool directory %s: %w", s.dir, err)
	}
	old, err := filepath.Glob(filepath.Join(s.dir, "xid-*.spool"))
	if err != nil {
		return err
	}
	for _, p := range old {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove old spool file: %w", err)
		}
	}
	s.cleaned = true
	return nil
}

// abort drops the subtransaction sub of xid, or the whole transaction when
// sub is xid.
func (s *spool) abort(xid, sub uint32) {
	tx, ok := s.txs[xid]
	if !ok {
		return // aborted before it sent anything in this session
	}
	if sub == xid {
		s.drop(tx)
		return
	}
	if tx.aborted == nil {
		tx.aborted = make(map[uint32]struct{})
	}
	tx.aborted[sub] = struct{}{}
}

// drop forgets tx and removes its file.
func (s *spool) drop(tx *spoolTx) {
	delete(s.txs, tx.xid)
	s.memBytes -= len(tx.mem)
	tx.mem = nil
	if tx.f != nil {
		name := tx.f.Name()
		_ = tx.f.Close()
		_ = os.Remove(name)
		tx.f = nil
	}
}

// commit takes xid out of the spool and returns a reader over its records
// (nil when the transaction sent nothing in this session). The caller
// closes the reader, which removes the file.
func (s *spool) commit(xid uint32) (*spoolReader, error) {
	tx, ok := s.txs[xid]
	if !ok {
		return nil, nil
	}
	delete(s.txs, xid)
	r := &spoolReader{tx: tx}
	if tx.f == nil {
		r.r = bytes.NewReader(tx.mem)
		s.memBytes -= len(tx.mem)
		return r, nil
	}
	if err := tx.w.Flush(); err != nil {
		s.drop(tx)
		return nil, spoolErr(tx, err)
	}
	if _, err := tx.f.Seek(0, io.SeekStart); err != nil {
		s.drop(tx)
		return nil, spoolErr(tx, err)
	}
	tx.w = nil
	r.r = bufio.NewReaderSize(tx.f, spoolBufBytes)
	return r, nil
}

// discard drops xid, committed and handed out already (forwarded).
func (s *spool) discard(xid uint32) {
	if tx, ok := s.txs[xid]; ok {
		s.drop(tx)
	}
}

// close drops every open transaction and a directory the spool made.
func (s *spool) close() {
	for _, tx := range s.txs {
		s.drop(tx)
	}
	if s.tmp {
		_ = os.RemoveAll(s.dir)
	}
}

func spoolErr(tx *spoolTx, err error) error {
	name := "memory"
	if tx.f != nil {
		name = tx.f.Name()
	}
	return fmt.Errorf("spool streamed transaction %d (%s): %w", tx.xid, name, err)
}

// spoolReader reads a committed transaction's records back in order.
type spoolReader struct {
	tx  *spoolTx
	r   io.Reader
	buf []byte
	hdr [spoolHeader]byte
}

// next returns the next record not in an aborted subtransaction; msg is
// valid until the next call. ok is false at the end.
func (r *spoolReader) next() (walStart change.LSN, msg []byte, ok bool, err error) {
	for {
		if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
			if err == io.EOF {
				return 0, nil, false, nil
			}
			return 0, nil, false, spoolErr(r.tx, err)
		}
		n := int(binary.BigEndian.Uint32(r.hdr[0:]))
		sub := binary.BigEndian.Uint32(r.hdr[4:])
		if cap(r.buf) < n {
			r.buf = make([]byte, n)
		}
		r.buf = r.buf[:n]
		if _, err := io.ReadFull(r.r, r.buf); err != nil {
			return 0, nil, false, spoolErr(r.tx, err)
		}
		// A subtransaction's abort drops its changes but keeps the schema
		// sent in it: pgoutput sends a table's Relation (and Types) once per
		// streamed transaction. (It also forgets that at a Stream Abort and
		// sends it again before the next change; keeping it costs nothing
		// and does not depend on that.)
		if _, aborted := r.tx.aborted[sub]; aborted && r.buf[0] != 'R' && r.buf[0] != 'Y' {
			continue
		}
		return change.LSN(binary.BigEndian.Uint64(r.hdr[8:])), r.buf, true, nil
	}
}

// close releases the transaction's memory and removes its file.
func (r *spoolReader) close() {
	r.tx.mem = nil
	if f := r.tx.f; f != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		r.tx.f = nil
	}
}
