package capture

import (
	"context"
	"fmt"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/decode"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// loop is one streaming session: it owns the replication connection, so
// receiving and status updates happen here and only here (rule 6).
type loop struct {
	c   *Capture
	src *postgres.Source
	dec *decode.Decoder
	now func() time.Time

	// held is the highest position the trail or the ack checkpoint holds
	// durably; transactions committed below it were stored already (rule 5).
	held change.LSN
	// acked is the last flush position sent to the source.
	acked change.LSN
	// serverWALEnd is the latest WAL end reported by a keepalive.
	serverWALEnd change.LSN

	skipping      bool      // the open transaction is a re-delivery
	pendingSync   bool      // committed records written but not yet handed to the syncer
	syncDue       time.Time // when pending records must be handed to the syncer
	unsyncedBytes int64
	// The syncer goroutine fsyncs flushed trail data while this loop keeps
	// receiving: an inline fsync would stall the stream for milliseconds
	// per group commit. One sync is in flight at a time; commits arriving
	// meanwhile form the next group.
	syncReq      chan trail.FlushMark
	syncRes      chan syncResult
	syncInFlight bool
	sawData      bool   // XLogData since the last heartbeat
	txs, changes uint64 // written since the last stats update

	nextStatus    time.Time
	lastStatus    time.Time
	nextHeartbeat time.Time
	heartbeatOff  bool
}

type syncResult struct {
	durable change.LSN
	err     error
}

func newLoop(c *Capture, src *postgres.Source, start change.LSN) *loop {
	now := c.cfg.Now()
	l := &loop{
		syncReq:    make(chan trail.FlushMark, 1),
		syncRes:    make(chan syncResult, 1),
		c:          c,
		src:        src,
		dec:        decode.New(),
		now:        c.cfg.Now,
		held:       max(c.w.LastEndLSN(), start),
		acked:      start,
		nextStatus: now,
	}
	if c.cfg.Source.Heartbeat > 0 {
		l.nextHeartbeat = now.Add(c.cfg.Source.Heartbeat)
	} else {
		l.heartbeatOff = true
	}
	return l
}

func (l *loop) run(ctx context.Context) (err error) {
	// Shutdown interrupts a blocked receive; the loop then sees ctx done.
	stopInterrupt := context.AfterFunc(ctx, l.src.Interrupt)
	defer stopInterrupt()
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
		if l.dec.InTx() && !l.skipping {
			if rerr := l.c.w.Rollback(); rerr != nil && err == nil {
				err = trailErr(fmt.Errorf("roll back open transaction: %w", rerr))
			}
		}
		if serr := l.syncNow(); serr != nil && err == nil {
			err = serr
		}
		if err == nil || ctx.Err() != nil {
			// Clean stop: tell the source what is durable now.
			_ = l.src.SendStatus(context.Background(), l.held, false)
		}
	}()
	for {
		if ctx.Err() != nil {
			return nil
		}
		if err := l.timedWork(ctx); err != nil {
			return err
		}
		msg, err := l.src.Receive(l.deadline())
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		switch msg.Kind {
		case postgres.XLogData:
			l.sawData = true
			l.unsyncedBytes += int64(len(msg.Data))
			if err := l.handle(ctx, msg.WALStart, msg.Data); err != nil {
				return err
			}
		case postgres.Keepalive:
			l.serverWALEnd = max(l.serverWALEnd, msg.ServerWALEnd)
			if msg.ReplyRequested {
				l.nextStatus = time.Time{}
			}
		}
	}
}

// handle decodes one pgoutput message and writes it to the trail.
func (l *loop) handle(ctx context.Context, walStart change.LSN, data []byte) error {
	ev, err := l.dec.Decode(walStart, data)
	if err != nil {
		return postgres.Terminal(fmt.Errorf("decode pgoutput message at %s: %w", walStart, err))
	}
	w := l.c.w
	switch ev.Kind {
	case decode.EventBegin:
		// A transaction whose commit record starts below what is held was
		// stored already: skip it whole (rule 5).
		l.skipping = ev.Tx.FinalLSN < l.held
		if l.skipping {
			return nil
		}
		return trailErr(w.Begin(ev.Tx))
	case decode.EventRelation:
		if err := l.src.FillPrimaryKey(ctx, ev.Relation); err != nil {
			return err
		}
		return trailErr(w.Schema(ev.Relation))
	case decode.EventChange:
		if l.skipping {
			return nil
		}
		if !l.dec.InTx() && ev.Change.LSN < l.held {
			return nil // a non-transactional message delivered before
		}
		if err := w.Change(ev.Change); err != nil {
			return trailErr(err)
		}
		l.changes++
		if l.c.OnChange != nil {
			l.c.OnChange(ev.Change)
		}
		if !l.dec.InTx() {
			l.markPending()
		}
		return nil
	case decode.EventCommit:
		if l.skipping {
			l.skipping = false
			if ev.Tx.EndLSN > l.held {
				return fmt.Errorf("transaction %d re-delivered with end LSN %s past the trail's %s", ev.Tx.XID, ev.Tx.EndLSN, l.held)
			}
			return nil
		}
		if err := w.Commit(ev.Tx); err != nil {
			return trailErr(err)
		}
		l.txs++
		l.markPending()
		if l.unsyncedBytes >= l.c.cfg.GroupCommitBytes {
			return l.startSync()
		}
	}
	return nil
}

func (l *loop) markPending() {
	if !l.pendingSync {
		l.pendingSync = true
		l.syncDue = l.now().Add(l.c.cfg.GroupCommitDelay)
	}
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

// timedWork runs whatever is due: group-commit fsync, status update,
// heartbeat.
func (l *loop) timedWork(ctx context.Context) error {
	if err := l.pollSync(); err != nil {
		return err
	}
	now := l.now()
	l.c.loopNanos.Store(now.UnixNano())
	if l.pendingSync && !now.Before(l.syncDue) {
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
	if !l.heartbeatOff && !now.Before(l.nextHeartbeat) {
		if !l.sawData {
			sent, err := l.src.Heartbeat(ctx)
			if err != nil {
				l.c.log.Warn("heartbeat failed", "err", err)
			} else if !sent {
				l.c.log.Info("heartbeats off: the source is a standby and source.primary_dsn is not set")
				l.heartbeatOff = true
			}
		}
		l.sawData = false
		l.nextHeartbeat = now.Add(l.c.cfg.Source.Heartbeat)
	}
	return nil
}

// sendStatus acknowledges the durable position. When nothing is pending it
// adopts the keepalive's WAL end (rule 3), storing it in the ack checkpoint
// first so a restart can tell an idle-adopted position from lost data.
func (l *loop) sendStatus() error {
	ack := l.held
	idle := !l.dec.InTx() && !l.pendingSync && !l.syncInFlight
	if idle && l.serverWALEnd > ack {
		if err := l.c.ack.Store(uint64(l.serverWALEnd)); err != nil {
			return trailErr(err)
		}
		ack = l.serverWALEnd
		l.held = ack
	}
	if err := l.src.SendStatus(context.Background(), ack, false); err != nil {
		return err
	}
	l.acked = ack
	l.c.updateStats(func(s *Stats) { s.Acked = ack })
	return nil
}

// deadline is when the next timed work is due: the receive waits no longer.
func (l *loop) deadline() time.Time {
	d := l.nextStatus
	if l.pendingSync && !l.syncInFlight && l.syncDue.Before(d) {
		d = l.syncDue
	}
	if l.syncInFlight {
		// Poll for the fsync's end; when data flows, every message does.
		if p := l.now().Add(time.Millisecond); p.Before(d) {
			d = p
		}
	}
	if !l.heartbeatOff && l.nextHeartbeat.Before(d) {
		d = l.nextHeartbeat
	}
	if d.IsZero() {
		// A zero deadline would mean "no deadline" to the socket.
		d = l.now()
	}
	return d
}
