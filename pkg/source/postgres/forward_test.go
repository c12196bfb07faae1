package postgres

import (
	"context"
	"encoding/binary"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/decode"
	"github.com/cdcd-io/cdcd/pkg/source"
)

// pgoutput messages, as the server sends them (protocol 2).
type msg []byte

func m(t byte) msg               { return msg{t} }
func (b msg) u8(v byte) msg      { return append(b, v) }
func (b msg) u16(v uint16) msg   { return binary.BigEndian.AppendUint16(b, v) }
func (b msg) u32(v uint32) msg   { return binary.BigEndian.AppendUint32(b, v) }
func (b msg) u64(v uint64) msg   { return binary.BigEndian.AppendUint64(b, v) }
func (b msg) str(s string) msg   { return append(append(b, s...), 0) }
func streamStart(xid uint32) msg { return m('S').u32(xid).u8(1) }
func streamInsert(xid uint32, id string) msg {
	return m('I').u32(xid).u32(16384).u8('N').u16(1).u8('t').u32(uint32(len(id))).append(id)
}
func (b msg) append(s string) msg { return append(b, s...) }

// forwardingStream is a Stream with forwarding on and no connection: what
// decode does with each message is all there is to see.
func forwardingStream(t *testing.T) *Stream {
	st := &Stream{src: &Source{cfg: Config{ForwardStreamed: true}}, dec: decode.NewBorrowing(),
		log: slog.New(slog.DiscardHandler), spool: newSpool(t.TempDir())}
	t.Cleanup(st.spool.close)
	// The table, announced by an earlier transaction.
	rel := m('R').u32(16384).str("public").str("t").u8('d').u16(1).u8(1).str("id").u32(25).u32(0xffffffff)
	_, err := st.dec.Decode(1, rel)
	require.NoError(t, err)
	return st
}

func feedOne(t *testing.T, st *Stream, b msg) source.Event {
	t.Helper()
	ev, err := st.decode(context.Background(), 100, b)
	require.NoError(t, err)
	return ev
}

// TestForwardingStateMachine: a streamed transaction's first segment opens
// a forwarded transaction (Begin without FinalLSN) whose changes go out at
// once and whose Stream Commit ends it; the same transaction streamed from
// its start again, or an ordinary transaction arriving, withdraws it — the
// latter with the ordinary Begin queued behind the Withdraw and forwarding
// paused, 1 s doubling to a minute, back to none after a forwarded commit.
func TestForwardingStateMachine(t *testing.T) {
	st := forwardingStream(t)
	ev := feedOne(t, st, streamStart(900))
	require.Equal(t, source.Begin, ev.Kind)
	require.Equal(t, change.Tx{XID: 900}, *ev.Tx)
	ev = feedOne(t, st, streamInsert(900, "1"))
	require.Equal(t, source.Change, ev.Kind)
	require.Equal(t, "1", string(ev.Change.New[0].Data))
	require.Equal(t, source.None, feedOne(t, st, m('E')).Kind)
	ev = feedOne(t, st, m('c').u32(900).u8(0).u64(0x500).u64(0x510).u64(0))
	require.Equal(t, source.Commit, ev.Kind)
	require.Equal(t, change.LSN(0x500), ev.Tx.FinalLSN)
	require.Zero(t, st.spool.open(), "the spooled copy is dropped")
	require.Nil(t, st.fwd)

	// Streamed from its start again: what was forwarded would be written twice.
	require.Equal(t, source.Begin, feedOne(t, st, streamStart(901)).Kind)
	feedOne(t, st, streamInsert(901, "2"))
	feedOne(t, st, m('E'))
	require.Equal(t, source.Withdraw, feedOne(t, st, streamStart(901)).Kind)
	require.Nil(t, st.fwd)
	require.Zero(t, st.forwardPause, "not withdrawn for another commit: no pause")
	feedOne(t, st, m('E'))
	feedOne(t, st, m('A').u32(901).u32(901))

	// An ordinary transaction arrives: Withdraw, then its Begin.
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		xid := uint32(910 + i)
		st.forwardAfter = time.Time{} // as if the pause had passed
		require.Equal(t, source.Begin, feedOne(t, st, streamStart(xid)).Kind)
		feedOne(t, st, m('E'))
		ev = feedOne(t, st, m('B').u64(0x600).u64(0).u32(950+xid))
		require.Equal(t, source.Withdraw, ev.Kind)
		require.Equal(t, xid, ev.Tx.XID)
		require.NotNil(t, st.queued)
		require.Equal(t, source.Begin, st.queued.Kind)
		require.Equal(t, 950+xid, st.queued.Tx.XID)
		st.queued = nil
		feedOne(t, st, m('C').u8(0).u64(0x600).u64(0x610).u64(0))
		require.Equal(t, want, st.forwardPause)
		require.WithinDuration(t, time.Now().Add(want), st.forwardAfter, time.Second)
		// While paused, a new streamed transaction is only spooled.
		require.Equal(t, source.None, feedOne(t, st, streamStart(xid+100)).Kind)
		require.Nil(t, st.fwd)
		feedOne(t, st, m('E'))
		feedOne(t, st, m('A').u32(xid).u32(xid))
		feedOne(t, st, m('A').u32(xid+100).u32(xid+100))
	}
	for range 10 {
		st.pauseForwarding()
	}
	require.Equal(t, forwardPauseMax, st.forwardPause)

	// A forwarded commit ends the pause series.
	st.forwardAfter = time.Time{}
	require.Equal(t, source.Begin, feedOne(t, st, streamStart(990)).Kind)
	feedOne(t, st, m('E'))
	require.Equal(t, source.Commit, feedOne(t, st, m('c').u32(990).u8(0).u64(0x700).u64(0x710).u64(0)).Kind)
	require.Zero(t, st.forwardPause)
}
