package decode

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// feed decodes msgs in order and fails the test on any error.
func feed(t *testing.T, d *Decoder, msgs ...[]byte) []Event {
	t.Helper()
	evs := make([]Event, 0, len(msgs))
	for i, m := range msgs {
		ev, err := d.Decode(change.LSN(0x100+i), m)
		require.NoError(t, err, "message %d (%q)", i, m[0])
		evs = append(evs, ev)
	}
	return evs
}

// inTx returns a decoder that knows the test relations and is inside a
// transaction.
func inTx(t *testing.T) *Decoder {
	t.Helper()
	d := New()
	feed(t, d, moodType, usersRel, ordersRel, beginMsg(0x2000, t0, 700))
	return d
}

func text(s string) change.Value { return change.Text(s) }
func bin(b ...byte) change.Value {
	return change.Value{Kind: change.ValueBinary, Data: append([]byte{}, b...)}
}
func absent() change.Value              { return change.Value{Kind: change.ValueAbsent} }
func row(vs ...change.Value) change.Row { return change.Row(vs) }

func TestBeginOriginCommit(t *testing.T) {
	d := New()
	require.False(t, d.InTx())

	ev, err := d.Decode(1, beginMsg(0x2000, t0, 700))
	require.NoError(t, err)
	require.Equal(t, EventBegin, ev.Kind)
	tx := ev.Tx
	require.Equal(t, &change.Tx{XID: 700, FinalLSN: 0x2000, CommitTime: t0}, tx)
	require.Equal(t, time.UTC, tx.CommitTime.Location())
	require.True(t, d.InTx())

	ev, err = d.Decode(2, originMsg(0x1FFF, "node_a"))
	require.NoError(t, err)
	require.Equal(t, Event{}, ev)

	t1 := t0.Add(time.Microsecond)
	ev, err = d.Decode(3, commitMsg(0x2000, 0x2030, t1))
	require.NoError(t, err)
	require.Equal(t, EventCommit, ev.Kind)
	require.Same(t, tx, ev.Tx)
	require.Equal(t, &change.Tx{XID: 700, FinalLSN: 0x2000, CommitLSN: 0x2000, EndLSN: 0x2030, CommitTime: t1, Origin: "node_a"}, ev.Tx)
	require.False(t, d.InTx())
}

func TestRelation(t *testing.T) {
	d := New()
	evs := feed(t, d, moodType, usersRel, ordersRel,
		relationMsg(1, "s", "odd", 'n', col{false, "x", 999999, 3}))
	require.Equal(t, EventNone, evs[0].Kind)
	require.Equal(t, EventRelation, evs[1].Kind)

	users := evs[1].Relation
	require.Equal(t, &change.Relation{
		OID: oidUsers, Schema: "public", Name: "users", ReplicaIdentity: 'd',
		Columns: []change.Column{
			{Name: "id", TypeOID: oidInt8, TypeName: "int8", TypeMod: -1, Key: true},
			{Name: "name", TypeOID: oidText, TypeName: "text", TypeMod: -1},
			{Name: "bio", TypeOID: oidText, TypeName: "text", TypeMod: -1},
			{Name: "mood", TypeOID: oidMood, TypeName: "public.mood", TypeMod: -1},
		},
	}, users)
	got, ok := d.Relation(oidUsers)
	require.True(t, ok)
	require.Same(t, users, got)

	orders := evs[2].Relation
	require.Equal(t, byte('f'), orders.ReplicaIdentity)
	require.Equal(t, "numeric", orders.Columns[1].TypeName)
	require.Equal(t, int32(655366), orders.Columns[1].TypeMod)
	require.Equal(t, "bytea", orders.Columns[2].TypeName)
	require.Empty(t, orders.PrimaryKey)

	odd := evs[3].Relation
	require.Equal(t, "", odd.Columns[0].TypeName, "unknown type OID without a Type message")

	_, ok = d.Relation(42)
	require.False(t, ok)
}

func TestTypeMessage(t *testing.T) {
	d := New()
	evs := feed(t, d,
		typeMsg(oidMood, "public", "mood"),
		typeMsg(16500, "pg_catalog", "weird"),
		relationMsg(7, "public", "t", 'd', col{true, "m", oidMood, -1}, col{false, "w", 16500, -1}))
	require.Equal(t, Event{}, evs[0])
	cols := evs[2].Relation.Columns
	require.Equal(t, "public.mood", cols[0].TypeName)
	require.Equal(t, "weird", cols[1].TypeName, "pg_catalog is not qualified")
}

func TestRowChanges(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		want change.Change // Relation and LSN are filled in by the test
		rel  uint32
	}{{
		name: "insert mixed",
		msg:  insertMsg(oidUsers, tT("1"), tT("ann"), tN(), tT("")),
		rel:  oidUsers,
		want: change.Change{Op: change.OpInsert, New: row(text("1"), text("ann"), change.Null, text(""))},
	}, {
		name: "insert binary column",
		msg:  insertMsg(oidOrders, tT("7"), tT("12.50"), tB(0xDE, 0, 0xEF)),
		rel:  oidOrders,
		want: change.Change{Op: change.OpInsert, New: row(text("7"), text("12.50"), bin(0xDE, 0, 0xEF))},
	}, {
		name: "insert all null",
		msg:  insertMsg(oidUsers, tN(), tN(), tN(), tN()),
		rel:  oidUsers,
		want: change.Change{Op: change.OpInsert, New: row(change.Null, change.Null, change.Null, change.Null)},
	}, {
		name: "update new only with unchanged TOAST",
		msg:  updateMsg(oidUsers, 0, nil, tT("1"), tT("anne"), tU(), tT("sad")),
		rel:  oidUsers,
		want: change.Change{Op: change.OpUpdate, New: row(text("1"), text("anne"), change.Unchanged, text("sad"))},
	}, {
		name: "update key change: K with absent non-key columns",
		msg:  updateMsg(oidUsers, 'K', []tv{tT("1"), tN(), tN(), tN()}, tT("2"), tT("anne"), tN(), tT("sad")),
		rel:  oidUsers,
		want: change.Change{Op: change.OpUpdate, OldKeyOnly: true,
			Old: row(text("1"), absent(), absent(), absent()),
			New: row(text("2"), text("anne"), change.Null, text("sad"))},
	}, {
		name: "update REPLICA IDENTITY FULL: O",
		msg:  updateMsg(oidOrders, 'O', []tv{tT("7"), tT("12.50"), tN()}, tT("7"), tT("13.00"), tU()),
		rel:  oidOrders,
		want: change.Change{Op: change.OpUpdate,
			Old: row(text("7"), text("12.50"), change.Null),
			New: row(text("7"), text("13.00"), change.Unchanged)},
	}, {
		name: "delete K",
		msg:  deleteMsg(oidUsers, 'K', tT("2"), tN(), tN(), tN()),
		rel:  oidUsers,
		want: change.Change{Op: change.OpDelete, OldKeyOnly: true, Old: row(text("2"), absent(), absent(), absent())},
	}, {
		name: "delete O keeps nulls",
		msg:  deleteMsg(oidOrders, 'O', tT("7"), tN(), tB()),
		rel:  oidOrders,
		want: change.Change{Op: change.OpDelete, Old: row(text("7"), change.Null, bin())},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := inTx(t)
			ev, err := d.Decode(0xABC, tc.msg)
			require.NoError(t, err)
			require.Equal(t, EventChange, ev.Kind)
			want := tc.want
			want.LSN = 0xABC
			want.Relation, _ = d.Relation(tc.rel)
			require.Equal(t, &want, ev.Change)
			require.Same(t, want.Relation, ev.Change.Relation)
		})
	}
}

// TestDecodeCopies checks that nothing decoded aliases the caller's buffer
// and that values cannot grow into each other.
func TestDecodeCopies(t *testing.T) {
	d := inTx(t)
	buf := updateMsg(oidOrders, 'O', []tv{tT("7"), tT("12.50"), tB(1, 2)}, tT("8"), tT("13.00"), tU())
	ev, err := d.Decode(1, buf)
	require.NoError(t, err)
	mbuf := messageMsg(1, 5, "p", "content")
	mev, err := d.Decode(2, mbuf)
	require.NoError(t, err)
	for i := range buf {
		buf[i] = 0xFF
	}
	for i := range mbuf {
		mbuf[i] = 0xFF
	}
	c := ev.Change
	require.Equal(t, row(text("7"), text("12.50"), bin(1, 2)), c.Old)
	require.Equal(t, row(text("8"), text("13.00"), change.Unchanged), c.New)
	require.Equal(t, "content", string(mev.Change.Message.Content))
	require.Equal(t, "p", mev.Change.Message.Prefix)

	require.Equal(t, len(c.Old), cap(c.Old), "old row capacity clipped")
	for _, v := range append(append(change.Row{}, c.Old...), c.New...) {
		require.Equal(t, len(v.Data), cap(v.Data), "value capacity clipped")
	}
	c.Old = append(c.Old, text("x"))
	require.Equal(t, text("8"), c.New[0], "appending to Old must not write into New")
}

func TestRelationResentMidTx(t *testing.T) {
	d := inTx(t)
	oldRel, _ := d.Relation(oidUsers)
	first := feed(t, d, insertMsg(oidUsers, tT("1"), tT("a"), tN(), tN()))[0].Change

	// ALTER TABLE users DROP COLUMN bio, ADD COLUMN age int4 — mid-transaction.
	evs := feed(t, d,
		relationMsg(oidUsers, "public", "users", 'd',
			col{true, "id", oidInt8, -1}, col{false, "name", oidText, -1},
			col{false, "mood", oidMood, -1}, col{false, "age", oidInt4, -1}, col{false, "extra", oidJSONB, -1}),
		insertMsg(oidUsers, tT("2"), tT("b"), tT("ok"), tT("42"), tT(`{"a":1}`)))
	newRel := evs[0].Relation
	second := evs[1].Change

	require.NotSame(t, oldRel, newRel)
	require.True(t, d.InTx(), "a Relation message does not end the transaction")
	require.Same(t, oldRel, first.Relation)
	require.Len(t, first.Relation.Columns, 4)
	require.Equal(t, "bio", first.Relation.Columns[2].Name)
	require.Same(t, newRel, second.Relation)
	require.Len(t, second.New, 5)
	require.Equal(t, "jsonb", newRel.Columns[4].TypeName)
	got, _ := d.Relation(oidUsers)
	require.Same(t, newRel, got)

	// A tuple in the old shape is now an error.
	_, err := d.Decode(1, insertMsg(oidUsers, tT("3"), tT("c"), tN(), tN()))
	require.ErrorIs(t, err, ErrMalformed)
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		opts             byte
		cascade, restart bool
	}{{0, false, false}, {1, true, false}, {2, false, true}, {3, true, true}} {
		d := inTx(t)
		ev, err := d.Decode(9, truncateMsg(tc.opts, oidUsers, oidOrders))
		require.NoError(t, err)
		users, _ := d.Relation(oidUsers)
		orders, _ := d.Relation(oidOrders)
		require.Equal(t, &change.Change{Op: change.OpTruncate, LSN: 9, Truncate: &change.Truncate{
			Relations: []*change.Relation{users, orders}, Cascade: tc.cascade, RestartIdentity: tc.restart,
		}}, ev.Change)
	}
}

func TestMessages(t *testing.T) {
	d := New()
	// Non-transactional, outside a transaction (e.g. a heartbeat).
	ev, err := d.Decode(5, messageMsg(0, 0x1000, "cdcd.heartbeat", "hb"))
	require.NoError(t, err)
	require.Equal(t, Event{Kind: EventChange, Change: &change.Change{Op: change.OpMessage, LSN: 5,
		Message: &change.Message{Prefix: "cdcd.heartbeat", Content: []byte("hb")}}}, ev)
	require.False(t, d.InTx())

	feed(t, d, beginMsg(0x2000, t0, 1))
	ev, err = d.Decode(6, messageMsg(1, 0x2000, "app", "in tx"))
	require.NoError(t, err)
	require.Equal(t, &change.Message{Transactional: true, Prefix: "app", Content: []byte("in tx")}, ev.Change.Message)

	// Non-transactional inside a transaction, empty content and prefix.
	ev, err = d.Decode(7, messageMsg(0, 0x2000, "", ""))
	require.NoError(t, err)
	require.Equal(t, &change.Message{Content: []byte{}}, ev.Change.Message)
	require.True(t, d.InTx())
}

func TestReset(t *testing.T) {
	d := inTx(t)
	require.True(t, d.InTx())
	d.Reset()
	require.False(t, d.InTx())
	_, ok := d.Relation(oidUsers)
	require.True(t, ok, "Reset keeps the relation cache")
	feed(t, d, beginMsg(0x3000, t0, 701), insertMsg(oidUsers, tT("1"), tN(), tN(), tN()), commitMsg(0x3000, 0x3010, t0))
}

func TestPgTime(t *testing.T) {
	require.Equal(t, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), Time(0))
	require.Equal(t, time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC), Time(-1))
	require.Equal(t, t0, Time(pgMicros(t0)))
	require.NotPanics(t, func() { Time(1<<63 - 1); Time(-1 << 63) })
}

func TestKindString(t *testing.T) {
	require.Equal(t, "change", EventChange.String())
	require.Equal(t, "?", Kind(99).String())
}

func TestBorrowing(t *testing.T) {
	d := NewBorrowing()
	feed(t, d, moodType, usersRel, ordersRel)
	begin := feed(t, d, beginMsg(0x2000, t0, 700))[0]
	first := insertMsg(oidOrders, tB(1, 2, 3), tU(), tN())
	ev := feed(t, d, first)[0]
	require.Equal(t, row(bin(1, 2, 3), change.Unchanged, change.Null), ev.Change.New)
	// Values alias the message: no copy.
	require.Same(t, &first[len(first)-5], &ev.Change.New[0].Data[0])

	// The next change reuses the Change and its row.
	upd := feed(t, d, updateMsg(oidOrders, 'K', []tv{tB(9), tN(), tN()}, tB(9), tT("x"), tN()))[0]
	require.Same(t, ev.Change, upd.Change)
	require.Equal(t, &change.Change{Op: change.OpUpdate, LSN: 0x100, Relation: upd.Change.Relation,
		Old: row(bin(9), change.Null, change.Null), OldKeyOnly: true, New: row(bin(9), text("x"), change.Null)}, upd.Change)

	// Begin and Commit share the Decoder's Tx.
	commit := feed(t, d, commitMsg(0x2000, 0x2030, t0))[0]
	require.Same(t, begin.Tx, commit.Tx)
	require.Equal(t, change.LSN(0x2030), commit.Tx.EndLSN)

	// Row changes and transactions then decode without allocating.
	insert, bg, cm := insertMsg(oidOrders, tB(1), tT("y"), tN()), beginMsg(0x3000, t0, 701), commitMsg(0x3000, 0x3030, t0)
	allocs := testing.AllocsPerRun(100, func() {
		for _, m := range [][]byte{bg, insert, insert, cm} {
			if _, err := d.Decode(1, m); err != nil {
				t.Fatal(err)
			}
		}
	})
	require.Zero(t, allocs)
}
