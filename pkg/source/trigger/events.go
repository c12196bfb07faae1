package trigger

import (
	"context"
	"fmt"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/source"
)

// flight is the batch being written to the trail, and the cursor of the
// events still to deliver from it.
type flight struct {
	batch Batch
	base  change.LSN
	at    time.Time // when it was read: the transactions' CommitTime
	// i is the transaction being delivered, j its next change in the
	// changes read so far; tx is its change.Tx once Begin went out (nil
	// before). Changes are read when their transaction begins, in groups
	// of whole transactions of at most Config.ReadRows rows, and a larger
	// transaction a page of ReadRows at a time: after is the id of its last
	// change read, left the number of its changes not read yet.
	i, j  int
	tx    *change.Tx
	after int64
	left  int
}

// newFlight delivers b's transactions after base, skipping the first skip
// (which the trail holds already).
func newFlight(b Batch, base change.LSN, at time.Time, skip int) *flight {
	return &flight{batch: b, base: base, at: at, i: skip}
}

// end is the EndLSN of the batch's last transaction.
func (f *flight) end() change.LSN { return f.base + change.LSN(2*len(f.batch.Txs)) }

// done reports whether every event was delivered.
func (f *flight) done() bool { return f.i >= len(f.batch.Txs) }

// Next implements source.Source: it delivers the events of the batch in
// flight; with none in flight it polls, at most once per PollInterval
// after a poll that found nothing. While a delivered batch waits for its
// Ack, or the next poll is not due, it waits until deadline and returns
// an event of kind None. A poll itself is bounded by ctx only.
func (s *Source) Next(ctx context.Context, deadline time.Time) (source.Event, error) {
	if !s.started {
		return source.Event{}, fmt.Errorf("trigger source: Next before Start")
	}
	for {
		if s.fl != nil {
			if !s.fl.done() {
				return s.event(ctx)
			}
			// The batch waits for its Ack, which only the caller can give.
			s.wait(ctx, deadline)
			return source.Event{Kind: source.None}, nil
		}
		if s.now().Before(s.pollDue) {
			if deadline.Before(s.pollDue) {
				s.wait(ctx, deadline)
				return source.Event{Kind: source.None}, nil
			}
			if !s.wait(ctx, s.pollDue) {
				return source.Event{Kind: source.None}, nil
			}
		}
		if ctx.Err() != nil {
			return source.Event{Kind: source.None}, nil
		}
		if err := s.poll(ctx); err != nil {
			return source.Event{}, err
		}
	}
}

// wait sleeps until t or ctx ends; it reports whether t was reached.
func (s *Source) wait(ctx context.Context, t time.Time) bool {
	d := t.Sub(s.now())
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// poll reads the next batch. A batch with transactions becomes the flight
// once its state is stored (step 2); an empty one only moves prev on.
func (s *Source) poll(ctx context.Context) error {
	if r := s.cfg.Exports.pending(); r != nil {
		return s.export(ctx, r)
	}
	b, err := s.reader.heads(ctx, s.conn, s.prev, nil)
	if err != nil {
		return classify(fmt.Errorf("trigger source: %w", err))
	}
	return s.take(b)
}

// take makes b the flight, or for an empty b moves prev on.
func (s *Source) take(b Batch) error {
	at := s.now()
	if len(b.Txs) == 0 {
		// Not stored: a restart polls from the stored, older position
		// and finds the same nothing plus whatever came since.
		s.prev = b.Cur
		s.pollDue = at.Add(s.cfg.PollInterval)
		return nil
	}
	if err := storeState(s.statePath, state{SystemID: s.systemID, Prev: b.Prev, Cur: b.Cur, Base: s.base}); err != nil {
		return err
	}
	s.fl = newFlight(b, s.base, at, 0)
	return nil
}

// event returns the flight's next event: Begin, the Relations a change
// needs announced, the Change, and after the last change the Commit.
func (s *Source) event(ctx context.Context) (source.Event, error) {
	f := s.fl
	t := &f.batch.Txs[f.i]
	if f.tx == nil {
		if err := s.read(ctx, f); err != nil {
			return source.Event{}, err
		}
		final := f.base + change.LSN(2*f.i+1)
		f.tx = &change.Tx{
			XID: uint32(t.XID), FinalLSN: final, CommitLSN: final, EndLSN: final + 1, CommitTime: f.at,
		}
		f.j = 0
		return source.Event{Kind: source.Begin, Tx: f.tx, Bytes: 24}, nil
	}
	if f.j == len(t.Changes) && f.left > 0 {
		if err := s.readPage(ctx, f, t); err != nil {
			return source.Event{}, err
		}
	}
	if f.j < len(t.Changes) {
		c := &t.Changes[f.j]
		if rel := s.unannounced(c); rel != nil {
			s.announced[rel.OID] = rel
			return source.Event{Kind: source.Relation, Relation: rel, Bytes: 64 * (1 + len(rel.Columns))}, nil
		}
		f.j++
		return source.Event{Kind: source.Change, Change: c, Bytes: changeBytes(c)}, nil
	}
	tx := f.tx
	f.tx = nil
	t.Changes = nil // delivered: a restart reads them again from the log
	f.i++
	return source.Event{Kind: source.Commit, Tx: tx, Bytes: 24}, nil
}

// read makes the changes of the flight's transaction i available before
// its Begin: already read with its group, or read now with the group it
// starts, or, when it alone exceeds ReadRows, its first page.
func (s *Source) read(ctx context.Context, f *flight) error {
	t := &f.batch.Txs[f.i]
	f.left = 0
	switch {
	case t.Changes != nil:
		return nil
	case t.Rows > s.cfg.ReadRows:
		f.after, f.left = t.FirstID-1, t.Rows
		return s.readPage(ctx, f, t)
	default:
		if _, err := s.reader.loadGroup(ctx, s.conn, f.batch.Txs[f.i:], s.cfg.ReadRows); err != nil {
			return classify(fmt.Errorf("trigger source: %w", err))
		}
		return nil
	}
}

// readPage replaces t's changes with its next page.
func (s *Source) readPage(ctx context.Context, f *flight, t *Tx) error {
	page, last, err := s.reader.loadPage(ctx, s.conn, t, f.after, min(f.left, s.cfg.ReadRows))
	if err != nil {
		return classify(fmt.Errorf("trigger source: %w", err))
	}
	t.Changes, f.j, f.after, f.left = page, 0, last, f.left-len(page)
	return nil
}

// unannounced returns a relation of c not yet sent in this session in the
// shape c uses, or nil.
func (s *Source) unannounced(c *change.Change) *change.Relation {
	if c.Truncate != nil {
		for _, rel := range c.Truncate.Relations {
			if s.announced[rel.OID] != rel {
				return rel
			}
		}
		return nil
	}
	if c.Relation != nil && s.announced[c.Relation.OID] != c.Relation {
		return c.Relation
	}
	return nil
}

// changeBytes is about the size of a change-log row.
func changeBytes(c *change.Change) int {
	n := 32
	for _, v := range c.Old {
		n += len(v.Data) + 4
	}
	for _, v := range c.New {
		n += len(v.Data) + 4
	}
	return n
}
