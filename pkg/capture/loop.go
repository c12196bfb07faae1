package capture

import (
	"context"
	"fmt"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/decode"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
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
	pendingSync   bool      // committed records written but not fsynced
	syncDue       time.Time // when pending records must be fsynced
	unsyncedBytes int64
	sawData       bool // XLogData since the last heartbeat

	nextStatus    time.Time
	nextHeartbeat time.Time
	heartbeatOff  bool
}

func newLoop(c *Capture, src *postgres.Source, start change.LSN) *loop {
	now := c.cfg.Now()
	l := &loop{
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
	defer func() {
		// However the session ends, drop a half-received transaction and
		// make the complete ones durable, so the next session resumes right
		// after them.
		if l.dec.InTx() && !l.skipping {
			if rerr := l.c.w.Rollback(); rerr != nil && err == nil {
				err = trailErr(fmt.Errorf("roll back open transaction: %w", rerr))
			}
		}
		if serr := l.sync(); serr != nil && err == nil {
			err = serr
		}
		if err == nil || ctx.Err() != nil {
			// Clean stop: tell the source what is durable now.
			_ = l.src.SendStatus(context.Background(), l.acked, false)
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
		l.c.stats.Changes++
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
		l.c.stats.Transactions++
		l.markPending()
		if l.unsyncedBytes >= l.c.cfg.GroupCommitBytes {
			return l.sync()
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

// sync fsyncs committed records (group commit) and acknowledges them.
func (l *loop) sync() error {
	if !l.pendingSync {
		return nil
	}
	durable, err := l.c.w.Sync()
	if err != nil {
		return trailErr(err)
	}
	l.pendingSync = false
	l.unsyncedBytes = 0
	l.held = max(l.held, durable)
	l.c.stats.Durable = durable
	if l.c.OnDurable != nil {
		l.c.OnDurable(durable)
	}
	if l.held > l.acked {
		l.nextStatus = time.Time{} // ack promptly
	}
	return nil
}

// timedWork runs whatever is due: group-commit fsync, status update,
// heartbeat.
func (l *loop) timedWork(ctx context.Context) error {
	now := l.now()
	if l.pendingSync && !now.Before(l.syncDue) {
		if err := l.sync(); err != nil {
			return err
		}
	}
	if !now.Before(l.nextStatus) {
		if err := l.sendStatus(); err != nil {
			return err
		}
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
	idle := !l.dec.InTx() && !l.pendingSync
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
	l.c.stats.Acked = ack
	return nil
}

// deadline is when the next timed work is due: the receive waits no longer.
func (l *loop) deadline() time.Time {
	d := l.nextStatus
	if l.pendingSync && l.syncDue.Before(d) {
		d = l.syncDue
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
