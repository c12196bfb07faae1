package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/decode"
	"github.com/cdcd-io/cdcd/pkg/source"
)

// forward is a streamed transaction handed to capture as it arrives
// (Config.ForwardStreamed): its Begin went out at its first Stream Start,
// each data message of its stream blocks goes out at once, and its Commit at
// its Stream Commit. Its messages are spooled too, so that it can be
// withdrawn and replayed whole at its commit instead.
type forward struct {
	// tx is what the Begin announced: the XID only (FinalLSN 0: the
	// commit is not known yet), Origin once an Origin message sets it.
	tx change.Tx
	// active: the open stream block is this transaction's.
	active bool
	// undo holds the relations its Relation messages replaced in the
	// decoder's cache, oldest first, to put back if it is withdrawn.
	undo []relUndo
}

type relUndo struct {
	oid  uint32
	prev *change.Relation // nil: none was cached
}

// startForward begins forwarding the streamed transaction whose first
// Stream Start s is, when it may: it is the only one open and nothing is
// being replayed. It returns the Begin to hand out (None when not).
func (st *Stream) startForward(s *decode.Stream) source.Event {
	if !st.src.cfg.ForwardStreamed || !s.First || st.fwd != nil || st.replay != nil || st.spool.open() != 1 ||
		time.Now().Before(st.forwardAfter) {
		return source.Event{}
	}
	st.fwd = &forward{tx: change.Tx{XID: s.XID}, active: true}
	return source.Event{Kind: source.Begin, Tx: &st.fwd.tx}
}

// Withdrawing a transaction because another one committed first wastes
// what apply did with it, and where commits are frequent the next one would
// be withdrawn too: after such a withdrawal, forwarding pauses for
// forwardPause, doubled after each one up to forwardPauseMax, and back to
// the start after a forwarded transaction commits.
const (
	forwardPause    = time.Second
	forwardPauseMax = time.Minute
)

// pauseForwarding is called when a forwarded transaction was withdrawn
// because another one committed first.
func (st *Stream) pauseForwarding() {
	st.forwardPause = min(max(2*st.forwardPause, forwardPause), forwardPauseMax)
	st.forwardAfter = time.Now().Add(st.forwardPause)
}

// forwardData decodes a data message of the forwarded transaction at once.
func (st *Stream) forwardData(ctx context.Context, walStart change.LSN, s *decode.Stream, size int) (source.Event, error) {
	f := st.fwd
	if s.Type == 'R' && len(s.Body) >= 4 {
		oid := binary.BigEndian.Uint32(s.Body)
		prev, _ := st.dec.Relation(oid)
		f.undo = append(f.undo, relUndo{oid: oid, prev: prev})
	}
	ev, err := st.dec.DecodeStreamed(&f.tx, walStart, s)
	if err != nil {
		return source.Event{}, Terminal(fmt.Errorf("decode streamed transaction %d's message at %s: %w", f.tx.XID, walStart, err))
	}
	if ev.Kind != decode.EventRelation {
		return st.event(ctx, ev, size)
	}
	// The relation as the transaction sees it. Capture completes it (its
	// primary key) and sinks may create or alter target tables from the
	// source's catalog, which shows only committed DDL: if the transaction
	// changed the table itself, wait for its commit (withdraw, replay).
	rel := ev.Relation
	prev := f.undo[len(f.undo)-1].prev
	if prev == nil || !sameColumns(prev, rel) {
		ok, err := st.src.committedColumns(ctx, rel)
		if err != nil {
			return source.Event{}, err
		}
		if !ok {
			return st.withdraw("it changes " + rel.QualifiedName()), nil
		}
	}
	out, err := st.event(ctx, ev, size)
	if errors.Is(err, errKeyNotPublished) {
		// Its key column was dropped or renamed inside it; at its commit
		// the replay decides (and reports a real misconfiguration).
		return st.withdraw("its primary key of " + rel.QualifiedName() + " is not what it streams"), nil
	}
	if err != nil {
		return source.Event{}, err
	}
	if rel.ReplicaIdentity == 'd' && !keyIsPrimary(rel) {
		ok, err := st.src.immediateKey(ctx, rel)
		if err != nil {
			return source.Event{}, err
		}
		if !ok {
			return st.withdraw("it changes the primary key of " + rel.QualifiedName()), nil
		}
	}
	return out, nil
}

// sameColumns reports whether a and b announce the same table: names,
// replica identity, and each column's name, type and key flag.
func sameColumns(a, b *change.Relation) bool {
	if a.Schema != b.Schema || a.Name != b.Name || a.ReplicaIdentity != b.ReplicaIdentity || len(a.Columns) != len(b.Columns) {
		return false
	}
	for i, c := range a.Columns {
		d := b.Columns[i]
		if c.Name != d.Name || c.TypeOID != d.TypeOID || c.TypeMod != d.TypeMod || c.Key != d.Key {
			return false
		}
	}
	return true
}

// keyIsPrimary reports whether the columns pgoutput flags as the replica
// identity are the primary key read from the catalog (under REPLICA
// IDENTITY DEFAULT they are the same, unless the open transaction changed
// the key).
func keyIsPrimary(rel *change.Relation) bool {
	n := 0
	for _, c := range rel.Columns {
		if c.Key {
			n++
		}
	}
	if n != len(rel.PrimaryKey) {
		return false
	}
	for _, i := range rel.PrimaryKey {
		if !rel.Columns[i].Key {
			return false
		}
	}
	return true
}

// withdraw takes the forwarded transaction back: capture drops what it
// wrote of it, and it comes again whole from the spool at its commit (or
// never, if it aborted). The relations its messages cached are put back:
// the server will not announce them again to a later transaction that
// uses the relation as it was.
func (st *Stream) withdraw(why string) source.Event {
	f := st.fwd
	st.fwd = nil
	for _, u := range slices.Backward(f.undo) {
		st.dec.RestoreRelation(u.oid, u.prev)
	}
	st.log.Debug("forwarded streamed transaction withdrawn", "xid", f.tx.XID, "why", why)
	return source.Event{Kind: source.Withdraw, Tx: &f.tx}
}

// commitForwarded ends the forwarded transaction at its Stream Commit: its
// spooled copy is dropped and tx, with the commit's positions and time, is
// handed out as its Commit.
func (st *Stream) commitForwarded(tx *change.Tx) source.Event {
	f := st.fwd
	st.fwd = nil
	st.forwardPause = 0
	st.spool.discard(tx.XID)
	tx.Origin = f.tx.Origin
	return source.Event{Kind: source.Commit, Tx: tx}
}

// withdrawBefore hands out a Withdraw of the forwarded transaction now and
// ev at the next call: ev (an ordinary transaction's Begin, a stand-alone
// message, another streamed transaction's replay) cannot be written while
// the forwarded one is open in the trail.
func (st *Stream) withdrawBefore(ev source.Event, why string) source.Event {
	st.queued = &ev
	st.pauseForwarding()
	return st.withdraw(why)
}
