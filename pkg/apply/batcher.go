package apply

import (
	"context"
	"errors"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// batcher turns trail records into batches of whole transactions.
type batcher struct {
	cfg Config
	out chan<- *sink.Batch
	ctx context.Context
	w   *Worker // for holds; nil in tests of the batcher alone

	cur     *sink.Batch // being built; nil when empty
	first   time.Time   // when cur got its first change or transaction
	tx      *sink.Tx    // the open transaction (BEGIN read, COMMIT not yet)
	chunked bool        // part of tx was already sent in a Partial batch
	last    sink.Position
	txRows  int // rows of tx in cur
	txBytes int
	err     error  // a send interrupted by shutdown
	sent    uint64 // trail seq of the last COMMIT sent in a complete batch
	// skipBelow, when the worker resumed in a trail other than the one its
	// position came from, drops the transactions the sink applied already:
	// those whose commit starts below the position's end LSN.
	skipBelow change.LSN
	skipping  bool
	// minDelay is how old a batch must be before idle closes it: the
	// sink's BatchPacer delay, at most cfg.MaxDelay; zero: at once.
	minDelay time.Duration
	// due: idle found cur ready while the applier still had a batch
	// waiting; cur goes at the first commit read once the queue is empty.
	due bool
	// early: the open transaction was forwarded before its commit (its
	// BEGIN has FinalLSN 0); whole: it is not sent in Partial chunks.
	early, whole bool
}

// run reads until the context ends or the reader fails.
func (b *batcher) run(r *trail.Reader) error {
	for {
		rec, err := r.Next(b.ctx)
		if err != nil {
			if b.ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, trail.ErrRolledBack) {
				// Capture lost its source mid-transaction after this
				// worker had started on it: start over from the position.
				return sink.Retriable(err)
			}
			return err
		}
		if err := b.add(rec); err != nil {
			return nil // shutdown while sending
		}
	}
}

func (b *batcher) batch() *sink.Batch {
	if b.cur == nil {
		b.cur = &sink.Batch{Position: b.last}
		b.first = time.Now()
	}
	return b.cur
}

func (b *batcher) add(rec trail.Record) error {
	if b.skipBelow != 0 {
		switch {
		case rec.Type == trail.RecordBegin && rec.Tx.FinalLSN != 0 && rec.Tx.FinalLSN < b.skipBelow:
			b.skipping = true
			return nil
		case b.skipping && rec.Type == trail.RecordCommit:
			b.skipping = false
			return nil
		case b.skipping:
			return nil
		case b.tx == nil && rec.Type != trail.RecordBegin && rec.Change != nil && rec.Change.LSN < b.skipBelow:
			return nil // a stand-alone message applied before
		}
	}
	switch rec.Type {
	case trail.RecordBegin:
		b.early = rec.Tx.FinalLSN == 0
		b.whole = false
		if b.early {
			// Forwarded before its commit (source.Withdraw): where it
			// commits is known only at its COMMIT, which decides the skip
			// and the hold. While the skip may apply (the first
			// transactions after resuming from another trail) it is sent
			// whole. Otherwise the complete transactions batched before it
			// go first, committed on their own: a hold decided at its
			// COMMIT must find them applied, not waiting in its open
			// target transaction.
			b.whole = b.skipBelow != 0
			if !b.whole && b.cur != nil && len(b.cur.Txs) > 0 {
				if err := b.send(); err != nil {
					return err
				}
			}
		} else if err := b.gate(rec.Tx); err != nil {
			return err
		}
		b.tx = &sink.Tx{Tx: rec.Tx}
		b.chunked, b.txRows, b.txBytes = false, 0, 0
	case trail.RecordChange, trail.RecordMessage:
		c := rec.Change
		if b.tx == nil { // a non-transactional message stands alone
			if c.Op == change.OpMessage && c.Message.Prefix == sink.HeartbeatPrefix {
				return nil
			}
			cur := b.batch()
			cur.Txs = append(cur.Txs, sink.Tx{Changes: []*change.Change{c}})
			return nil
		}
		if c.Op == change.OpMessage && c.Message.Prefix == sink.HeartbeatPrefix {
			return nil // the transaction still moves the position
		}
		if b.whole && len(b.tx.Changes) == 0 && c.LSN >= b.skipBelow {
			// Its first change is past skipBelow, so is its commit: not
			// applied before, chunks are safe.
			b.whole = false
		}
		b.batch()
		b.tx.Changes = append(b.tx.Changes, c)
		b.txRows++
		b.txBytes += changeBytes(c)
		if !b.whole && (b.txRows >= b.cfg.MaxRows || b.txBytes >= b.cfg.MaxBytes) {
			// The transaction alone fills a batch: send it in chunks.
			return b.sendPartial()
		}
		if len(b.cur.Txs) > 0 && (b.cur.Rows+b.txRows > b.cfg.MaxRows || b.cur.Bytes+b.txBytes > b.cfg.MaxBytes) {
			// Close the batch of complete transactions before this one.
			return b.send()
		}
	case trail.RecordCommit:
		if b.tx == nil {
			return nil // resumed after a BEGIN: cannot happen with positions at commits
		}
		if b.early {
			if b.skipBelow != 0 && rec.Tx.FinalLSN < b.skipBelow {
				b.tx, b.txRows, b.txBytes = nil, 0, 0 // applied before (see skipBelow); sent whole, so nothing was sent
				return nil
			}
			if err := b.gate(rec.Tx); err != nil {
				return err
			}
		}
		if b.skipBelow != 0 && rec.Tx.FinalLSN >= b.skipBelow {
			// The trail is in commit order: nothing after this was
			// applied before.
			b.skipBelow = 0
		}
		b.tx.Tx = rec.Tx
		cur := b.batch()
		cur.Txs = append(cur.Txs, *b.tx)
		cur.Rows += b.txRows
		cur.Bytes += b.txBytes
		b.last = sink.Position{Seq: rec.Seq, EndLSN: rec.Tx.EndLSN}
		cur.Position = b.last
		b.tx = nil
		if cur.Rows >= b.cfg.MaxRows || cur.Bytes >= b.cfg.MaxBytes || time.Since(b.first) >= b.cfg.MaxDelay ||
			b.due && len(b.out) == 0 {
			return b.send()
		}
	}
	return nil
}

// sendPartial sends what is batched plus the open transaction's changes so
// far, marked Partial; the transaction continues in the next batch.
func (b *batcher) sendPartial() error {
	cur := b.batch()
	cur.Txs = append(cur.Txs, sink.Tx{Tx: b.tx.Tx, Changes: b.tx.Changes})
	cur.Rows += b.txRows
	cur.Bytes += b.txBytes
	cur.Partial = true
	cur.Position = b.last
	b.tx.Changes = nil
	b.txRows, b.txBytes = 0, 0
	b.chunked = true
	return b.send()
}

// idle is called by the reader when it has caught up: send the complete
// transactions batched so far. An open transaction — a speculative reader
// waits at its COMMIT until that is durable — keeps its changes for the
// next batch; holding the complete ones back for it would add up to
// MaxDelay of latency whenever the next transaction is already arriving.
// A batch younger than minDelay stays open: the reader calls idle again
// when the trail grows or after its poll interval.
//
// Nor is it sent while the applier still has a batch waiting in the queue:
// it could not start on this one sooner, so later transactions join it
// (up to MaxRows, MaxBytes, MaxDelay) and a sink that falls behind — a
// backlog of small transactions — gets fewer, larger target transactions
// instead of one per trail group commit. It goes at the first commit read
// once the queue is empty, or at the next idle.
func (b *batcher) idle() {
	if b.cur == nil || len(b.cur.Txs) == 0 || b.minDelay > 0 && time.Since(b.first) < b.minDelay {
		return
	}
	if len(b.out) > 0 {
		b.due = true
		return
	}
	_ = b.send()
}

func (b *batcher) send() error {
	cur := b.cur
	b.cur, b.due = nil, false
	if b.tx != nil {
		// The open transaction's changes so far are not in cur; the next
		// batch starts now, with them.
		b.batch()
	}
	if !cur.Partial {
		b.sent = max(b.sent, cur.Position.Seq)
	}
	select {
	case b.out <- cur:
		return nil
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
}

func changeBytes(c *change.Change) int {
	return ValueBytes(c.Old) + ValueBytes(c.New) + 16
}
