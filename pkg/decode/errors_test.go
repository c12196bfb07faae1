package decode

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		inTx    bool
		msg     []byte
		want    error
		wantMsg string // substring of the error text
	}{
		{"empty message", false, nil, ErrTruncated, "empty message"},
		{"unknown type", false, []byte("Zxyz"), ErrUnknownMessage, "0x5a"},
		{"stream start inside tx", true, newMsg('S').u32(1).u8(1).b, ErrOutOfOrder, "Stream Start message: message out of transaction order: Stream Start inside a stream or transaction"},
		{"stream stop outside stream", false, []byte{'E'}, ErrOutOfOrder, "Stream Stop outside a stream"},
		{"stream commit inside tx", true, newMsg('c').u32(1).u8(0).u64(1).u64(2).u64(0).b, ErrOutOfOrder, "Stream Commit"},
		{"stream commit truncated", false, []byte{'c'}, ErrTruncated, "Stream Commit"},
		{"stream abort truncated", false, newMsg('A').u32(1).b, ErrTruncated, "Stream Abort"},
		{"stream abort extra bytes", false, newMsg('A').u32(1).u32(2).u8(0).b, ErrMalformed, "Stream Abort"},
		{"begin prepare", false, []byte{'b'}, ErrUnsupported, "Begin Prepare message: two-phase messages not supported"},
		{"prepare", true, []byte{'P'}, ErrUnsupported, "Prepare"},
		{"commit prepared", false, []byte{'K'}, ErrUnsupported, "Commit Prepared"},
		{"rollback prepared", false, []byte{'r'}, ErrUnsupported, "Rollback Prepared"},
		{"stream prepare", false, []byte{'p'}, ErrUnsupported, "Stream Prepare"},

		{"begin inside tx", true, beginMsg(0x3000, t0, 701), ErrOutOfOrder, "Begin of xid 701 inside transaction 700"},
		{"commit outside tx", false, commitMsg(0x2000, 0x2030, t0), ErrOutOfOrder, "Commit outside"},
		{"origin outside tx", false, originMsg(1, "x"), ErrOutOfOrder, "Origin outside"},
		{"insert outside tx", false, insertMsg(oidUsers, tT("1"), tN(), tN(), tN()), ErrOutOfOrder, "Insert outside"},
		{"update outside tx", false, updateMsg(oidUsers, 0, nil, tT("1"), tN(), tN(), tN()), ErrOutOfOrder, "Update outside"},
		{"delete outside tx", false, deleteMsg(oidUsers, 'K', tT("1"), tN(), tN(), tN()), ErrOutOfOrder, "Delete outside"},
		{"truncate outside tx", false, truncateMsg(0, oidUsers), ErrOutOfOrder, "Truncate outside"},
		{"transactional message outside tx", false, messageMsg(1, 1, "p", "c"), ErrOutOfOrder, "transactional message outside"},

		{"insert unknown relation", true, insertMsg(99, tT("1")), ErrUnknownRelation, "Insert message at byte 1: unknown relation OID: 99"},
		{"update unknown relation", true, updateMsg(99, 0, nil, tT("1")), ErrUnknownRelation, "99"},
		{"delete unknown relation", true, deleteMsg(99, 'K', tT("1")), ErrUnknownRelation, "99"},
		{"truncate unknown relation", true, truncateMsg(0, oidUsers, 99), ErrUnknownRelation, "Truncate message at byte 10: unknown relation OID: 99"},

		{"insert too few columns", true, insertMsg(oidUsers, tT("1"), tN(), tN()), ErrMalformed, "Insert message at byte 6: malformed message: tuple has 3 columns, relation public.users (OID 16384) has 4"},
		{"insert too many columns", true, insertMsg(oidUsers, tT("1"), tN(), tN(), tN(), tN()), ErrMalformed, "tuple has 5 columns"},
		{"update old tuple column count", true, updateMsg(oidUsers, 'K', []tv{tT("1")}, tT("1"), tN(), tN(), tN()), ErrMalformed, "tuple has 1 columns"},
		{"update new tuple column count", true, updateMsg(oidUsers, 'O', []tv{tT("1"), tN(), tN(), tN()}, tT("1")), ErrMalformed, "tuple has 1 columns"},
		{"delete column count", true, deleteMsg(oidOrders, 'O', tT("1")), ErrMalformed, "tuple has 1 columns"},
		{"insert bad marker", true, newMsg('I').u32(oidUsers).u8('K').tuple(tT("1"), tN(), tN(), tN()).b, ErrMalformed, "at byte 5: malformed message: tuple marker 'K', want 'N'"},
		{"update bad marker", true, newMsg('U').u32(oidUsers).u8('X').b, ErrMalformed, "tuple marker 'X', want 'K', 'O' or 'N'"},
		{"update old without new", true, newMsg('U').u32(oidUsers).u8('K').tuple(tT("1"), tN(), tN(), tN()).u8('K').tuple(tT("1"), tN(), tN(), tN()).b, ErrMalformed, "want 'N'"},
		{"delete bad marker", true, deleteMsg(oidUsers, 'N', tT("1"), tN(), tN(), tN()), ErrMalformed, "want 'K' or 'O'"},
		{"bad column kind", true, newMsg('I').u32(oidUsers).u8('N').u16(4).u8('t').u32(1).raw('1').u8('x').b, ErrMalformed, "at byte 14: malformed message: column 1 kind 'x'"},
		{"negative column length", true, newMsg('I').u32(oidUsers).u8('N').u16(4).u8('t').u32(0xFFFFFFFF).b, ErrMalformed, "at byte 9: malformed message: column 0 length -1"},
		{"huge column length", true, newMsg('I').u32(oidUsers).u8('N').u16(4).u8('b').u32(0x7FFFFFFF).raw('x').b, ErrTruncated, ""},
		{"negative message length", false, newMsg('M').u8(0).u64(1).str("p").u32(0x80000000).b, ErrMalformed, "content length"},
		{"truncate count larger than OIDs", true, newMsg('T').u32(3).u8(0).u32(oidUsers).b, ErrTruncated, "3 relations announced, 4 bytes"},
		{"truncate count smaller than OIDs", true, newMsg('T').u32(1).u8(0).u32(oidUsers).u32(oidOrders).b, ErrMalformed, "1 relations announced, 8 bytes"},
		{"relation column count beyond message", false, newMsg('R').u32(1).str("s").str("t").u8('d').u16(0xFFFF).b, ErrTruncated, "65535 columns announced"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := New()
			feed(t, d, moodType, usersRel, ordersRel)
			if tc.inTx {
				feed(t, d, beginMsg(0x2000, t0, 700))
			}
			ev, err := d.Decode(1, tc.msg)
			require.ErrorIs(t, err, tc.want)
			require.ErrorContains(t, err, tc.wantMsg)
			require.Equal(t, Event{}, ev)
			require.Equal(t, tc.inTx, d.InTx(), "an error leaves the transaction state alone")
		})
	}
}

// TestTruncatedAndTrailing cuts every valid message at every length, and
// appends a byte to each: the first must be ErrTruncated, the second
// ErrMalformed, never a panic or a success.
func TestTruncatedAndTrailing(t *testing.T) {
	for _, m := range sampleStream() {
		for n := 1; n < len(m); n++ {
			d := New()
			feed(t, d, moodType, usersRel, ordersRel, beginMsg(0x2000, t0, 700))
			if m[0] == 'B' {
				d.Reset()
			}
			_, err := d.Decode(1, m[:n:n])
			require.ErrorIs(t, err, ErrTruncated, "%s cut to %d of %d bytes", msgName(m[0]), n, len(m))
			require.ErrorContains(t, err, "decode pgoutput "+msgName(m[0])+" message at byte ")
		}
		d := New()
		feed(t, d, moodType, usersRel, ordersRel, beginMsg(0x2000, t0, 700))
		if m[0] == 'B' {
			d.Reset()
		}
		_, err := d.Decode(1, append(m[:len(m):len(m)], 0))
		require.ErrorIs(t, err, ErrMalformed, "%s with a trailing byte", msgName(m[0]))
		if m[0] != 'T' { // Truncate checks its OID count against the length up front
			require.ErrorContains(t, err, "1 bytes after the last field")
		}
	}
}

func TestErrorKeepsState(t *testing.T) {
	d := inTx(t)
	before, _ := d.Relation(oidUsers)
	_, err := d.Decode(1, relationMsg(oidUsers, "public", "users", 'd', col{true, "id", oidInt8, -1})[:20])
	require.ErrorIs(t, err, ErrTruncated)
	after, _ := d.Relation(oidUsers)
	require.Same(t, before, after, "a broken Relation message does not replace the cache entry")

	_, err = d.Decode(1, beginMsg(1, t0, 1))
	require.ErrorIs(t, err, ErrOutOfOrder)
	ev, err := d.Decode(2, commitMsg(0x2000, 0x2030, t0))
	require.NoError(t, err)
	require.Equal(t, uint32(700), ev.Tx.XID, "the failed Begin did not replace the open transaction")
	require.Equal(t, change.LSN(0x2030), ev.Tx.EndLSN)
}
