package trail

import (
	"fmt"
	"os"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// FlushMark is what Flush handed to the operating system and a later
// SyncFlushed makes durable. Every mark returned by Flush must be passed to
// SyncFlushed exactly once.
type FlushMark struct {
	f     *os.File // nil: nothing to sync (already durable)
	pos   Position
	end   change.LSN
	dirty bool
}

// End is the EndLSN of the last COMMIT the mark covers.
func (m FlushMark) End() change.LSN { return m.end }

// Flush is the first half of an asynchronous group commit: it writes the
// buffered records to the segment file without syncing and returns a mark.
// The producer may go on appending while another goroutine runs
// SyncFlushed(mark) — the fsync then overlaps with receiving and decoding
// instead of stalling them. Rollover happens here (synchronously, once per
// segment) when the segment is full, even with asynchronous syncs pending.
func (w *Writer) Flush() (FlushMark, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return FlushMark{}, err
	}
	if w.full() {
		if err := w.syncActive(); err != nil {
			return FlushMark{}, err
		}
		if err := w.rollover(); err != nil {
			return FlushMark{}, err
		}
		return FlushMark{pos: *w.durable.Load(), end: w.LastEndLSN()}, nil
	}
	if err := w.flush(); err != nil {
		return FlushMark{}, err
	}
	m := FlushMark{
		f:     w.f,
		pos:   Position{Seq: w.safeSeq, Segment: w.segFirst, Offset: w.safeOff},
		end:   w.lastEndLSN,
		dirty: w.dirty,
	}
	w.dirty = false
	w.asyncSyncs++
	return m, nil
}

// SyncFlushed is the second half of an asynchronous group commit: it
// fdatasyncs what mark covers, publishes it as durable, and returns the
// durable EndLSN. It may run on another goroutine than the producer, but
// marks must be synced in the order Flush returned them.
func (w *Writer) SyncFlushed(m FlushMark) (change.LSN, error) {
	if m.f == nil {
		return w.LastEndLSN(), nil
	}
	var err error
	if m.dirty {
		// Outside the lock: the producer keeps appending meanwhile. The
		// fsync covers at least every byte written before it started.
		err = w.syncFile(m.f)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.asyncSyncs--
	if w.asyncSyncs == 0 {
		w.closeRetired()
	}
	if err != nil {
		return 0, w.fail(fmt.Errorf("trail sync %s: %w", m.f.Name(), err))
	}
	if w.err != nil {
		return 0, w.err
	}
	cur := w.durable.Load()
	if m.pos.Segment > cur.Segment || (m.pos.Segment == cur.Segment && m.pos.Offset > cur.Offset) {
		w.durable.Store(&m.pos)
	}
	if uint64(m.end) > w.durableEnd.Load() {
		w.durableEnd.Store(uint64(m.end))
	}
	w.notify()
	return w.LastEndLSN(), nil
}
