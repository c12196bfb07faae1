package apply

import (
	"sync"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// Hold keeps a worker from applying any source transaction whose commit
// starts at or past LSN (its FinalLSN ≥ LSN), so the target stays at
// exactly the state of the source's transactions that committed before LSN
// — for as long as a reader (cdcd verify, cdcd cutover) needs it.
//
// The worker applies whole transactions in commit order, so the first
// transaction at or past LSN is a clean boundary: when the reader meets its
// BEGIN, the worker applies what it batched so far, waits until that is
// committed on the target, reports the hold Reached, and reads on only once
// the hold is released (Release, a newer Hold, or its time-out). A worker
// whose trail holds no transaction at or past LSN yet keeps applying until
// one arrives: the holder commits one (a logical message) to get there.
type Hold struct {
	// LSN is the hold's boundary.
	LSN change.LSN

	reached  chan struct{}
	released chan struct{}
	once     sync.Once // closes released
	mu       sync.Mutex
	pos      sink.Position
	at       bool // reached
	timer    *time.Timer
}

// Reached is closed once the worker stands at the boundary with everything
// before it committed on the target.
func (h *Hold) Reached() <-chan struct{} { return h.reached }

// Released is closed when the hold ends (Release, a newer hold, time-out).
func (h *Hold) Released() <-chan struct{} { return h.released }

// Position is where the worker stands once Reached: the last transaction
// applied before the boundary.
func (h *Hold) Position() sink.Position {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pos
}

// Release ends the hold; the worker reads on. Safe to call more than once.
func (h *Hold) Release() {
	h.once.Do(func() {
		if h.timer != nil {
			h.timer.Stop()
		}
		close(h.released)
	})
}

func (h *Hold) reach(p sink.Position) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.at {
		h.pos, h.at = p, true
		close(h.reached)
	}
}

// Hold sets a hold at lsn, replacing (and releasing) any earlier one; it
// releases itself after ttl (0: never) so a holder that dies cannot stop the
// sink for good.
func (w *Worker) Hold(lsn change.LSN, ttl time.Duration) *Hold {
	h := &Hold{LSN: lsn, reached: make(chan struct{}), released: make(chan struct{})}
	if ttl > 0 {
		h.timer = time.AfterFunc(ttl, func() {
			w.log.Warn("hold timed out: applying again", "lsn", lsn.String(), "ttl", ttl)
			w.ReleaseHold(h)
		})
	}
	w.holdMu.Lock()
	old := w.hold
	w.hold = h
	w.holdMu.Unlock()
	if old != nil {
		old.Release()
	}
	w.log.Info("hold set", "lsn", lsn.String(), "ttl", ttl)
	return h
}

// CurrentHold is the hold in force, nil when none.
func (w *Worker) CurrentHold() *Hold {
	w.holdMu.Lock()
	defer w.holdMu.Unlock()
	return w.hold
}

// ReleaseHold releases h and, when it is still the worker's hold, clears it.
func (w *Worker) ReleaseHold(h *Hold) {
	w.holdMu.Lock()
	if w.hold == h {
		w.hold = nil
	}
	w.holdMu.Unlock()
	h.Release()
	w.log.Info("hold released", "lsn", h.LSN.String())
}

// gate is called by the batcher at each BEGIN: while a hold's boundary is
// at or before tx, it flushes the complete transactions batched so far,
// waits until the worker has committed them, reports the hold reached and
// waits for its release.
func (b *batcher) gate(tx *change.Tx) error {
	if b.w == nil || tx == nil {
		return nil
	}
	for {
		h := b.w.CurrentHold()
		if h == nil || tx.FinalLSN < h.LSN {
			return nil
		}
		select {
		case <-h.released:
			continue // replaced or timed out: look again
		default:
		}
		if b.cur != nil && len(b.cur.Txs) > 0 {
			if err := b.send(); err != nil {
				return err
			}
		}
		if err := b.waitApplied(b.sent); err != nil {
			return err
		}
		h.reach(b.w.Stats().Position)
		select {
		case <-h.released:
		case <-b.ctx.Done():
			return b.ctx.Err()
		}
	}
}

// waitApplied waits until the worker has applied the trail up to seq.
func (b *batcher) waitApplied(seq uint64) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for b.w.Applied() < seq {
		select {
		case <-b.ctx.Done():
			return b.ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
