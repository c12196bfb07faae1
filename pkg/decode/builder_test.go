package decode

import (
	"encoding/binary"
	"time"
)

// msg builds pgoutput messages by hand, field by field, as the protocol
// docs describe them.
type msg struct{ b []byte }

func newMsg(t byte) *msg { return &msg{b: []byte{t}} }

func (m *msg) u8(v byte) *msg        { m.b = append(m.b, v); return m }
func (m *msg) u16(v uint16) *msg     { m.b = binary.BigEndian.AppendUint16(m.b, v); return m }
func (m *msg) u32(v uint32) *msg     { m.b = binary.BigEndian.AppendUint32(m.b, v); return m }
func (m *msg) u64(v uint64) *msg     { m.b = binary.BigEndian.AppendUint64(m.b, v); return m }
func (m *msg) str(s string) *msg     { m.b = append(append(m.b, s...), 0); return m }
func (m *msg) raw(b ...byte) *msg    { m.b = append(m.b, b...); return m }
func (m *msg) time(t time.Time) *msg { return m.u64(uint64(pgMicros(t))) }

func pgMicros(t time.Time) int64 { return t.UnixMicro() - pgEpochUnix*1_000_000 }

func beginMsg(finalLSN uint64, t time.Time, xid uint32) []byte {
	return newMsg('B').u64(finalLSN).time(t).u32(xid).b
}

func commitMsg(commitLSN, endLSN uint64, t time.Time) []byte {
	return newMsg('C').u8(0).u64(commitLSN).u64(endLSN).time(t).b
}

func originMsg(lsn uint64, name string) []byte { return newMsg('O').u64(lsn).str(name).b }

func typeMsg(oid uint32, ns, name string) []byte { return newMsg('Y').u32(oid).str(ns).str(name).b }

// col is a column of a Relation message.
type col struct {
	key  bool
	name string
	typ  uint32
	mod  int32
}

func relationMsg(oid uint32, ns, name string, ident byte, cols ...col) []byte {
	m := newMsg('R').u32(oid).str(ns).str(name).u8(ident).u16(uint16(len(cols)))
	for _, c := range cols {
		var f byte
		if c.key {
			f = 1
		}
		m.u8(f).str(c.name).u32(c.typ).u32(uint32(c.mod))
	}
	return m.b
}

// tv is one column of a TupleData.
type tv struct {
	kind byte
	data string
}

func tN() tv          { return tv{kind: 'n'} }
func tU() tv          { return tv{kind: 'u'} }
func tT(s string) tv  { return tv{kind: 't', data: s} }
func tB(b ...byte) tv { return tv{kind: 'b', data: string(b)} }

func (m *msg) tuple(vals ...tv) *msg {
	m.u16(uint16(len(vals)))
	for _, v := range vals {
		m.u8(v.kind)
		if v.kind == 't' || v.kind == 'b' {
			m.u32(uint32(len(v.data))).raw([]byte(v.data)...)
		}
	}
	return m
}

func insertMsg(oid uint32, vals ...tv) []byte { return newMsg('I').u32(oid).u8('N').tuple(vals...).b }

// updateMsg builds an Update; oldKind 0 means no old tuple.
func updateMsg(oid uint32, oldKind byte, old []tv, vals ...tv) []byte {
	m := newMsg('U').u32(oid)
	if oldKind != 0 {
		m.u8(oldKind).tuple(old...)
	}
	return m.u8('N').tuple(vals...).b
}

func deleteMsg(oid uint32, kind byte, old ...tv) []byte {
	return newMsg('D').u32(oid).u8(kind).tuple(old...).b
}

func truncateMsg(opts byte, oids ...uint32) []byte {
	m := newMsg('T').u32(uint32(len(oids))).u8(opts)
	for _, o := range oids {
		m.u32(o)
	}
	return m.b
}

func messageMsg(flags byte, lsn uint64, prefix, content string) []byte {
	return newMsg('M').u8(flags).u64(lsn).str(prefix).u32(uint32(len(content))).raw([]byte(content)...).b
}

// Type OIDs of built-in types used in tests.
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt4        = 23
	oidText        = 25
	oidJSONB       = 3802
	oidNumeric     = 1700
	oidTimestamptz = 1184
	oidUUID        = 2950
	oidVarchar     = 1043
	oidMood        = 16390 // an enum announced by a Type message
)

const (
	oidUsers  = 16384
	oidOrders = 16400
)

var (
	t0 = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)

	usersRel = relationMsg(oidUsers, "public", "users", 'd',
		col{true, "id", oidInt8, -1},
		col{false, "name", oidText, -1},
		col{false, "bio", oidText, -1},
		col{false, "mood", oidMood, -1},
	)
	ordersRel = relationMsg(oidOrders, "shop", "orders", 'f',
		col{true, "id", oidInt4, -1},
		col{true, "amount", oidNumeric, 655366},
		col{true, "photo", oidBytea, -1},
	)
	moodType = typeMsg(oidMood, "public", "mood")
)

// sampleStream is a realistic replication session touching every v1
// message type and tuple kind; it seeds the fuzzer and the oracle test.
func sampleStream() [][]byte {
	return [][]byte{
		messageMsg(0, 0x1000, "cdcd.heartbeat", "hb"),
		moodType,
		usersRel,
		ordersRel,
		beginMsg(0x2000, t0, 700),
		originMsg(0x1FFF, "node_a"),
		insertMsg(oidUsers, tT("1"), tT("ann"), tN(), tT("happy")),
		insertMsg(oidOrders, tT("7"), tT("12.50"), tB(0xDE, 0xAD, 0xBE, 0xEF)),
		updateMsg(oidUsers, 0, nil, tT("1"), tT("anne"), tU(), tT("sad")),
		updateMsg(oidUsers, 'K', []tv{tT("1"), tN(), tN(), tN()}, tT("2"), tT("anne"), tU(), tT("sad")),
		updateMsg(oidOrders, 'O', []tv{tT("7"), tT("12.50"), tU()}, tT("7"), tT("13.00"), tU()),
		messageMsg(1, 0x2100, "app", "in tx"),
		deleteMsg(oidUsers, 'K', tT("2"), tN(), tN(), tN()),
		deleteMsg(oidOrders, 'O', tT("7"), tT("13.00"), tN()),
		truncateMsg(3, oidUsers, oidOrders),
		commitMsg(0x2000, 0x2030, t0),
	}
}
