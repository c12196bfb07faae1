package decode

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// streamed inserts the xid after a data message's type byte, as pgoutput
// does inside a stream block.
func streamed(xid uint32, m []byte) []byte {
	return append(newMsg(m[0]).u32(xid).b, m[1:]...)
}

func streamStartMsg(xid uint32, first bool) []byte {
	f := byte(0)
	if first {
		f = 1
	}
	return newMsg('S').u32(xid).u8(f).b
}

func streamCommitMsg(xid uint32, commitLSN, endLSN uint64) []byte {
	return newMsg('c').u32(xid).u8(0).u64(commitLSN).u64(endLSN).time(t0).b
}

// TestStreamedTransaction: two segments of one transaction, a subtransaction
// abort, and an ordinary transaction between the segments; the spooled data
// messages decode at the commit as an ordinary transaction's.
func TestStreamedTransaction(t *testing.T) {
	d := New()
	feed(t, d, moodType)
	var spool []Stream
	keep := func(ev Event) {
		s := *ev.Stream
		s.Body = append([]byte(nil), s.Body...)
		spool = append(spool, s)
	}
	evs := feed(t, d,
		streamStartMsg(900, true),
		streamed(900, usersRel),
		originMsg(0x10, "node_a"),
		streamed(900, insertMsg(oidUsers, tT("1"), tT("ann"), tN(), tT("happy"))),
		streamed(901, insertMsg(oidUsers, tT("2"), tT("bob"), tN(), tN())),
		[]byte{'E'},
	)
	require.Equal(t, EventStreamStart, evs[0].Kind)
	require.Equal(t, &Stream{XID: 900, First: true}, evs[0].Stream)
	for _, ev := range evs[1:5] {
		require.Equal(t, EventStreamData, ev.Kind)
		keep(ev)
	}
	require.Equal(t, uint32(900), spool[1].XID, "Origin carries no xid: the stream's")
	require.Equal(t, uint32(901), spool[3].XID)
	require.Equal(t, EventStreamStop, evs[5].Kind)
	require.False(t, d.InStream())
	_, ok := d.Relation(oidUsers)
	require.False(t, ok, "a streamed Relation is decoded at the commit, not when it arrives")

	// An ordinary transaction between segments.
	feed(t, d, ordersRel, beginMsg(0x3000, t0, 950), insertMsg(oidOrders, tT("1"), tT("2"), tN()), commitMsg(0x3000, 0x3010, t0))

	evs = feed(t, d,
		streamStartMsg(900, false),
		streamed(902, insertMsg(oidUsers, tT("3"), tT("cy"), tN(), tN())),
		[]byte{'E'},
		newMsg('A').u32(900).u32(901).b,
	)
	require.False(t, evs[0].Stream.First)
	keep(evs[1])
	require.Equal(t, EventStreamAbort, evs[3].Kind)
	require.Equal(t, &Stream{XID: 900, SubXID: 901}, evs[3].Stream)

	evs = feed(t, d, streamCommitMsg(900, 0x4000, 0x4030))
	tx := evs[0].Tx
	require.Equal(t, EventStreamCommit, evs[0].Kind)
	require.Equal(t, change.Tx{XID: 900, FinalLSN: 0x4000, CommitLSN: 0x4000, EndLSN: 0x4030, CommitTime: t0}, *tx)

	require.NoError(t, d.Replay(tx))
	require.True(t, d.InTx())
	var ids []string
	for i, s := range spool {
		if s.XID == 901 {
			continue // the aborted subtransaction
		}
		ev, err := d.Decode(change.LSN(i), append([]byte{s.Type}, s.Body...))
		require.NoError(t, err)
		if ev.Kind == EventChange {
			ids = append(ids, string(ev.Change.New[0].Data))
			require.Equal(t, "public.mood", ev.Change.Relation.Columns[3].TypeName)
		}
	}
	require.Equal(t, []string{"1", "3"}, ids)
	require.Same(t, tx, d.EndReplay())
	require.Equal(t, "node_a", tx.Origin)
	require.False(t, d.InTx())
}

func TestStreamOrderErrors(t *testing.T) {
	d := New()
	feed(t, d, streamStartMsg(1, true))
	for name, m := range map[string][]byte{
		"begin in stream":        beginMsg(1, t0, 2),
		"stream start in stream": streamStartMsg(2, true),
		"commit in stream":       commitMsg(1, 2, t0),
		"data without xid":       {'I', 0, 0},
	} {
		ev, err := d.Decode(1, m)
		require.Error(t, err, name)
		require.Equal(t, Event{}, ev, name)
		require.True(t, d.InStream(), name)
	}
	feed(t, d, []byte{'E'})
	require.ErrorIs(t, d.Replay(&change.Tx{XID: 1}), nil)
	require.ErrorIs(t, d.Replay(&change.Tx{XID: 1}), ErrOutOfOrder, "replay inside a transaction")
}

// TestDecodeStreamed: a forwarded transaction's data messages decode at
// once, inside their stream block, as ordinary ones; a Relation replaces
// the cached one until RestoreRelation puts the old one back; outside a
// stream block, or inside a transaction, it is refused.
func TestDecodeStreamed(t *testing.T) {
	d := New()
	feed(t, d, moodType, usersRel)
	before, ok := d.Relation(oidUsers)
	require.True(t, ok)
	tx := &change.Tx{XID: 900}

	_, err := d.DecodeStreamed(tx, 1, &Stream{Type: 'I'})
	require.ErrorIs(t, err, ErrOutOfOrder, "outside a stream block")

	evs := feed(t, d, streamStartMsg(900, true),
		streamed(900, usersRel),
		originMsg(0x10, "node_a"),
		streamed(900, insertMsg(oidUsers, tT("1"), tT("ann"), tN(), tT("happy"))),
	)
	var got []Event
	for i, ev := range evs[1:] {
		require.Equal(t, EventStreamData, ev.Kind)
		out, err := d.DecodeStreamed(tx, change.LSN(100+i), ev.Stream)
		require.NoError(t, err)
		got = append(got, out)
		require.False(t, d.InTx(), "the transaction is open only while one message decodes")
	}
	require.Equal(t, EventRelation, got[0].Kind)
	require.NotSame(t, before, got[0].Relation)
	now, _ := d.Relation(oidUsers)
	require.Same(t, got[0].Relation, now, "the streamed Relation is cached at once")
	require.Equal(t, EventNone, got[1].Kind)
	require.Equal(t, "node_a", tx.Origin)
	require.Equal(t, EventChange, got[2].Kind)
	require.Equal(t, change.OpInsert, got[2].Change.Op)
	require.Equal(t, change.LSN(102), got[2].Change.LSN)
	require.Equal(t, "ann", string(got[2].Change.New[1].Data))
	require.Equal(t, "public.mood", got[2].Change.Relation.Columns[3].TypeName)

	_, err = d.DecodeStreamed(tx, 1, &Stream{Type: 'B', Body: []byte{0}})
	require.ErrorIs(t, err, ErrOutOfOrder, "a Begin is no data message")

	d.RestoreRelation(oidUsers, before)
	now, _ = d.Relation(oidUsers)
	require.Same(t, before, now)
	d.RestoreRelation(oidUsers, nil)
	_, ok = d.Relation(oidUsers)
	require.False(t, ok)
	feed(t, d, []byte{'E'})
	require.False(t, d.InStream())
}
