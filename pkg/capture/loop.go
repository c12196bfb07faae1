package capture

import (
	"context"
	"fmt"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/source"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// loop is one streaming session: it owns the source, so receiving and
// acknowledgements happen here and only here (rule 6).
type loop struct {
	c   *Capture
	src source.Source
	now func() time.Time

	// held is the highest position the trail or the ack checkpoint holds
	// durably; transactions committed below it were stored already (rule 5).
	held change.LSN
	// acked is the last flush position sent to the source.
	acked change.LSN
	// serverWALEnd is the latest WAL end reported by a keepalive.
	serverWALEnd change.LSN

	inTx        bool      // a transaction is open (Begin seen, no Commit yet)
	skipping    bool      // the open transaction is a re-delivery
	early       bool      // the open transaction was forwarded before its commit (FinalLSN 0 at Begin)
	pendingSync bool      // committed records written but not yet handed to the syncer
	syncDue     time.Time // when pending records must be handed to the syncer
	// nextSync is when the next fsync may start: after the last one ended,
	// twice its duration, at most GroupCommitInterval (see syncGap).
	syncStart, nextSync time.Time
	unsyncedBytes       int64
	// The syncer goroutine fsyncs flushed trail data while this loop keeps
	// receiving: an inline fsync would stall the stream for milliseconds
	// per group commit. One sync is in flight at a time; commits arriving
	// meanwhile form the next group.
	syncReq      chan trail.FlushMark
	syncRes      chan syncResult
	syncInFlight bool
	txs, changes uint64 // written since the last stats update

	nextStatus time.Time
	lastStatus time.Time
}

type syncResult struct {
	durable change.LSN
	err     error
}

func newLoop(c *Capture, src source.Source, start change.LSN) *loop {
	return &loop{
		syncReq:    make(chan trail.FlushMark, 1),
		syncRes:    make(chan syncResult, 1),
		c:          c,
		src:        src,
		now:        c.cfg.Now,
		held:       max(c.w.LastEndLSN(), start),
		acked:      start,
		nextStatus: c.cfg.Now(),
	}
}

func (l *loop) run(ctx context.Context) (err error) {
	syncerDone := make(chan struct{})
	go l.syncer(syncerDone)
	defer func() {
		// The in-flight fsync finishes before anything else touches the
		// trail; then the syncer goroutine ends.
		if l.syncInFlight {
			if serr := l.syncCompleted(<-l.syncRes); serr != nil && err == nil {
				err = serr
			}
		}
		close(l.syncReq)
		<-syncerDone
		// However the session ends, drop a half-received transaction and
		// make the complete ones durable, so the next session resumes right
		// after them.
		if l.inTx && !l.skipping {
			if rerr := l.c.w.Rollback(); rerr != nil && err == nil {
				err = trailErr(fmt.Errorf("roll back open transaction: %w", rerr))
			}
		}
		if serr := l.syncNow(); serr != nil && err == nil {
			err = serr
		}
		if err == nil || ctx.Err() != nil {
			// Clean stop: tell the source what is durable now.
			_, _ = l.src.Ack(context.Background(), l.ackable(), false)
		}
	}()
	for {
		if ctx.Err() != nil {
			return nil
		}
		if err := l.timedWork(ctx); err != nil {
			return err
		}
		ev, err := l.src.Next(ctx, l.deadline())
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := l.handle(ev); err != nil {
			return err
		}
	}
}

// handle writes one event to the trail.
func (l *loop) handle(ev source.Event) error {
	l.unsyncedBytes += int64(ev.Bytes)
	w := l.c.w
	switch ev.Kind {
	case source.Begin:
		l.inTx = true
		// A transaction whose commit record starts below what is held was
		// stored already: skip it whole (rule 5). One forwarded before its
		// commit (FinalLSN 0) is checked at its Commit.
		l.early = ev.Tx.FinalLSN == 0
		l.skipping = !l.early && ev.Tx.FinalLSN < l.held
		if l.skipping {
			return nil
		}
		return trailErr(w.Begin(ev.Tx))
	case source.Relation:
		return trailErr(w.Schema(ev.Relation))
	case source.Change:
		if l.skipping {
			return nil
		}
		if !l.inTx && ev.Change.LSN < l.held {
			return nil // a non-transactional message delivered before
		}
		if err := w.Change(ev.Change); err != nil {
			return trailErr(err)
		}
		l.changes++
		if l.c.OnChange != nil {
			l.c.OnChange(ev.Change)
		}
		if !l.inTx {
			l.markPending()
		}
		return nil
	case source.Commit:
		l.inTx = false
		if l.skipping {
			l.skipping = false
			if ev.Tx.EndLSN > l.held {
				return fmt.Errorf("transaction %d re-delivered with end LSN %s past the trail's %s", ev.Tx.XID, ev.Tx.EndLSN, l.held)
			}
			return nil
		}
		if l.early && ev.Tx.FinalLSN < l.held {
			// Forwarded before its commit, stored already (rule 5).
			if ev.Tx.EndLSN > l.held {
				return fmt.Errorf("transaction %d re-delivered with end LSN %s past the trail's %s", ev.Tx.XID, ev.Tx.EndLSN, l.held)
			}
			return trailErr(w.Rollback())
		}
		if err := w.Commit(ev.Tx); err != nil {
			return trailErr(err)
		}
		l.txs++
		if l.early {
			l.c.updateStats(func(s *Stats) { s.Forwarded++ })
		}
		l.markPending()
		if l.unsyncedBytes >= l.c.cfg.GroupCommitBytes {
			return l.startSync()
		}
	case source.Withdraw:
		if !l.inTx {
			return fmt.Errorf("source withdrew transaction %d, which is not open", ev.Tx.XID)
		}
		l.inTx = false
		if l.skipping {
			l.skipping = false
			return nil
		}
		l.c.updateStats(func(s *Stats) { s.Withdrawn++ })
		// Speculative readers notice the cut and start over.
		return trailErr(w.Rollback())
	}
	return nil
}

func (l *loop) markPending() {
	if !l.pendingSync {
		l.pendingSync = true
		l.syncDue = l.now().Add(l.c.cfg.GroupCommitDelay)
	}
}

// syncGap is how long capture waits after an fsync that took `took` before
// starting the next: twice its duration, at most limit. Back-to-back
// fsyncs of a steady stream of small transactions (a hundred or more a
// second) compete for the disk with the source's own WAL flushes when both
// share it; a gap proportional to the last fsync keeps the trail's share of
// the disk at a third or less, so a fast disk still syncs within a
// millisecond or two while a busy one gets fewer, larger fsyncs.
func syncGap(took, limit time.Duration) time.Duration {
	return min(2*took, limit)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// syncer fsyncs the marks the loop hands it, one at a time.
func (l *loop) syncer(done chan<- struct{}) {
	defer close(done)
	for m := range l.syncReq {
		d, err := l.c.w.SyncFlushed(m)
		l.syncRes <- syncResult{durable: d, err: err}
	}
}

// startSync hands the committed records to the syncer (group commit) unless
// a sync is already running; the next one then picks them up.
func (l *loop) startSync() error {
	if !l.pendingSync || l.syncInFlight {
		return nil
	}
	m, err := l.c.w.Flush()
	if err != nil {
		return trailErr(err)
	}
	l.pendingSync = false
	l.unsyncedBytes = 0
	l.syncInFlight = true
	l.syncStart = l.now()
	l.syncReq <- m
	return nil
}

// pollSync collects a finished fsync without waiting.
func (l *loop) pollSync() error {
	if !l.syncInFlight {
		return nil
	}
	select {
	case r := <-l.syncRes:
		return l.syncCompleted(r)
	default:
		return nil
	}
}

// syncCompleted records a finished fsync: its commits may now be acked.
func (l *loop) syncCompleted(r syncResult) error {
	l.syncInFlight = false
	now := l.now()
	took := now.Sub(l.syncStart)
	l.nextSync = now.Add(syncGap(took, l.c.cfg.GroupCommitInterval))
	l.c.updateStats(func(s *Stats) { s.Syncs++; s.SyncTime += took })
	if r.err != nil {
		return trailErr(r.err)
	}
	l.durable(r.durable)
	return nil
}

// syncNow fsyncs synchronously (session end, no sync in flight).
func (l *loop) syncNow() error {
	if !l.pendingSync {
		return nil
	}
	d, err := l.c.w.Sync()
	if err != nil {
		return trailErr(err)
	}
	l.pendingSync = false
	l.unsyncedBytes = 0
	l.durable(d)
	return nil
}

func (l *loop) durable(d change.LSN) {
	l.held = max(l.held, d)
	txs, changes := l.txs, l.changes
	l.txs, l.changes = 0, 0
	l.c.updateStats(func(s *Stats) { s.Durable = d; s.Transactions += txs; s.Changes += changes })
	if l.c.OnDurable != nil {
		l.c.OnDurable(d)
	}
	if l.held > l.acked {
		// Ack soon, but not after every group commit: each status update
		// costs the walsender work (and sometimes a slot fsync).
		if due := l.lastStatus.Add(l.c.cfg.AckInterval); due.Before(l.nextStatus) {
			l.nextStatus = due
		}
	}
}

// timedWork runs whatever is due: group-commit fsync, acknowledgement.
func (l *loop) timedWork(ctx context.Context) error {
	if err := l.pollSync(); err != nil {
		return err
	}
	now := l.now()
	l.c.loopNanos.Store(now.UnixNano())
	if l.pendingSync && !now.Before(l.syncDue) && !now.Before(l.nextSync) {
		if err := l.startSync(); err != nil {
			return err
		}
	}
	if !now.Before(l.nextStatus) {
		if err := l.sendStatus(); err != nil {
			return err
		}
		l.lastStatus = now
		l.nextStatus = now.Add(l.c.cfg.Source.StatusInterval)
	}
	return nil
}

// sendStatus acknowledges the durable position. When nothing is pending it
// adopts the position the source reports (rule 3), storing it in the ack
// checkpoint first so a restart can tell an idle-adopted position from lost
// data, and acknowledges that.
func (l *loop) sendStatus() error {
	ack := l.ackable()
	// Under ack: applied, adopt only once every sink has applied all the
	// trail holds: nothing is then pending anywhere.
	idle := !l.inTx && !l.pendingSync && !l.syncInFlight && ack == l.held
	adopt, err := l.src.Ack(context.Background(), ack, idle)
	if err != nil {
		return err
	}
	if idle && adopt > l.held {
		if err := l.c.ack.Store(uint64(adopt)); err != nil {
			return trailErr(err)
		}
		l.held = adopt
		if _, err := l.src.Ack(context.Background(), adopt, idle); err != nil {
			return err
		}
		ack = adopt
	}
	l.acked = ack
	l.c.updateStats(func(s *Stats) { s.Acked = ack })
	return nil
}

// ackable is what may be acknowledged: what the trail holds durably, and
// under ack: applied no more than every sink has applied.
func (l *loop) ackable() change.LSN {
	if l.c.cfg.Applied == nil {
		return l.held
	}
	return min(l.held, l.c.cfg.Applied())
}

// deadline is when the next timed work is due: the receive waits no longer.
func (l *loop) deadline() time.Time {
	d := l.nextStatus
	if due := later(l.syncDue, l.nextSync); l.pendingSync && !l.syncInFlight && due.Before(d) {
		d = due
	}
	if l.syncInFlight {
		// Poll for the fsync's end; when data flows, every message does.
		if p := l.now().Add(time.Millisecond); p.Before(d) {
			d = p
		}
	}
	if d.IsZero() {
		// A zero deadline would mean "no deadline" to the socket.
		d = l.now()
	}
	return d
}
