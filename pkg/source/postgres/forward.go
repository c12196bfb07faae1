package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"

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
	if !st.src.cfg.ForwardStreamed || !s.First || st.fwd != nil || st.replay != nil || st.spool.open() != 1 {
		return source.Event{}
	}
	st.fwd = &forward{tx: change.Tx{XID: s.XID}, active: true}
	return source.Event{Kind: source.Begin, Tx: &st.fwd.tx}
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
	return st.event(ctx, ev, size)
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
	return st.withdraw(why)
}
