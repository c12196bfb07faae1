package decode

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// Kind says what an Event carries.
type Kind uint8

// The event kinds.
const (
	// EventNone: the message was absorbed into the Decoder's state (Origin,
	// Type) and there is nothing to pass on.
	EventNone Kind = iota
	// EventBegin: a transaction started; Event.Tx has XID, FinalLSN and
	// CommitTime.
	EventBegin
	// EventCommit: the transaction ended; Event.Tx is the pointer returned
	// with EventBegin, now completed with CommitLSN, EndLSN, CommitTime and
	// Origin.
	EventCommit
	// EventRelation: a Relation message; Event.Relation is the new relation,
	// already in the cache.
	EventRelation
	// EventChange: an insert, update, delete, truncate or logical message in
	// Event.Change.
	EventChange
	// EventStreamStart: a segment of an in-progress transaction starts
	// (protocol v2); Event.Stream has its XID and First.
	EventStreamStart
	// EventStreamStop: the segment ends.
	EventStreamStop
	// EventStreamData: a message inside a segment, not decoded: the caller
	// spools Event.Stream (XID, Type, Body) and feeds it to Decode between
	// Replay and EndReplay at the Stream Commit.
	EventStreamData
	// EventStreamCommit: a streamed transaction committed; Event.Tx has XID,
	// CommitLSN (also as FinalLSN), EndLSN and CommitTime.
	EventStreamCommit
	// EventStreamAbort: a streamed transaction (Stream.SubXID == Stream.XID)
	// or one of its subtransactions (Stream.SubXID) aborted.
	EventStreamAbort
)

var kindNames = [...]string{"none", "begin", "commit", "relation", "change",
	"stream start", "stream stop", "stream data", "stream commit", "stream abort"}

// String names the kind for logs.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "?"
}

// Event is the result of decoding one message. Only the field named by Kind
// is set.
type Event struct {
	// Kind says which field below is set.
	Kind Kind
	// Tx is set for EventBegin and EventCommit (the same pointer for both).
	Tx *change.Tx
	// Relation is set for EventRelation.
	Relation *change.Relation
	// Change is set for EventChange.
	Change *change.Change
	// Stream is set for EventStreamStart, EventStreamData and
	// EventStreamAbort.
	Stream *Stream
}

// Decoder decodes a stream of pgoutput protocol v1 messages, and the
// streaming messages of protocol v2 (see stream.go). It keeps the
// relation and type caches of the replication session and the transaction in
// progress. A Decoder is not safe for concurrent use: like the replication
// connection, it belongs to one goroutine.
type Decoder struct {
	relations map[uint32]*change.Relation
	types     map[uint32]string // type OID -> name from Type messages
	builtins  *pgtype.Map       // names of built-in types
	tx        *change.Tx        // nil outside a transaction
	inStream  bool              // between Stream Start and Stream Stop
	streamXID uint32            // the open stream's top-level xid

	// borrow: row changes and transactions are handed out in the buffers
	// below, reused by the next Decode (NewBorrowing).
	borrow bool
	cur    change.Change // the row change handed out last
	vals   change.Row    // backing array of cur's rows
	curTx  change.Tx     // the transaction in progress
}

// New returns a Decoder with empty caches, outside any transaction.
func New() *Decoder {
	return &Decoder{
		relations: make(map[uint32]*change.Relation),
		types:     make(map[uint32]string),
		builtins:  pgtype.NewMap(),
	}
}

// NewBorrowing returns a Decoder like New's, except that what Decode returns
// for an insert, update or delete, and for a Begin or Commit, borrows: the
// Change (its rows, and value Data aliasing the message passed to Decode)
// and the Tx are valid only until the next Decode, which reuses them. It
// decodes without allocating, for a caller that consumes each event at once
// (capture writes it to the trail); a caller that keeps one copies it.
// Relations, truncates and logical messages are never borrowed.
func NewBorrowing() *Decoder {
	d := New()
	d.borrow = true
	return d
}

// Relation returns the cached relation with the given OID, as announced by
// the latest Relation message for it.
func (d *Decoder) Relation(oid uint32) (*change.Relation, bool) {
	r, ok := d.relations[oid]
	return r, ok
}

// InTx reports whether a Begin has been decoded without its Commit.
func (d *Decoder) InTx() bool { return d.tx != nil }

// Reset forgets the transaction in progress, for a connection lost in the
// middle of a transaction: the server sends it again from its Begin. The
// relation and type caches are kept (the server re-sends Relation messages
// after a reconnect anyway, and they replace the cached ones).
func (d *Decoder) Reset() { d.tx, d.inStream = nil, false }

// Decode decodes one pgoutput message: the WALData of an XLogData message.
// walStart is the XLogData's WALStart; it becomes Change.LSN.
//
// Decode copies everything it keeps, so the caller may reuse data as soon as
// it returns — unless the Decoder borrows (NewBorrowing): then a row
// change's values alias data until the next Decode. On error the Decoder's
// state is unchanged (a borrowing Decoder's last event is no longer valid).
//
// An EventRelation's relation has no PrimaryKey: the caller may set it (from
// the catalog) on the returned relation before decoding further messages;
// after that, relations are immutable.
func (d *Decoder) Decode(walStart change.LSN, data []byte) (Event, error) {
	if len(data) == 0 {
		return Event{}, fmt.Errorf("decode pgoutput message: empty message: %w", ErrTruncated)
	}
	r := reader{b: data, off: 1}
	t := data[0]
	if d.inStream && t != 'E' {
		return d.streamData(data)
	}
	switch t {
	case 'I', 'U', 'D', 'R', 'Y', 'O', 'T', 'M':
		return d.data(t, walStart, &r)
	case 'B':
		return d.begin(&r)
	case 'C':
		return d.commit(&r)
	case 'S':
		return d.streamStart(&r)
	case 'E':
		return d.streamStop(&r)
	case 'c':
		return d.streamCommit(&r)
	case 'A':
		return d.streamAbort(&r)
	case 'b', 'P', 'K', 'r', 'p':
		return Event{}, msgErr(t, ErrUnsupported)
	}
	return Event{}, msgErr(t, ErrUnknownMessage)
}

// data decodes a message that may also come inside a stream block (with
// its xid taken off): a row change, Relation, Type, Origin, Truncate or
// logical Message.
func (d *Decoder) data(t byte, walStart change.LSN, r *reader) (Event, error) {
	switch t {
	case 'I':
		return d.insert(walStart, r)
	case 'U':
		return d.update(walStart, r)
	case 'D':
		return d.delete(walStart, r)
	case 'R':
		return d.relation(r)
	case 'Y':
		return d.typ(r)
	case 'O':
		return d.origin(r)
	case 'T':
		return d.truncate(walStart, r)
	case 'M':
		return d.message(walStart, r)
	}
	return Event{}, msgErr(t, ErrUnknownMessage)
}

// pgEpochUnix is 2000-01-01 00:00:00 UTC, PostgreSQL's epoch, in Unix seconds.
const pgEpochUnix = 946684800

// Time converts a PostgreSQL timestamp (microseconds since 2000-01-01 UTC),
// as in pgoutput messages and the replication protocol's send times, into
// a UTC time, without overflowing for any input.
func Time(us int64) time.Time {
	sec, rem := us/1_000_000, us%1_000_000
	if rem < 0 {
		sec--
		rem += 1_000_000
	}
	return time.Unix(pgEpochUnix+sec, rem*1000).UTC()
}

// begin: Int64 final LSN, Int64 commit timestamp, Int32 xid.
func (d *Decoder) begin(r *reader) (Event, error) {
	if d.tx != nil {
		return Event{}, msgErr('B', fmt.Errorf("%w: Begin of xid %d inside transaction %d", ErrOutOfOrder, beginXID(r), d.tx.XID))
	}
	finalLSN := r.uint64()
	ts := r.uint64()
	xid := r.uint32()
	if err := readErr('B', r); err != nil {
		return Event{}, err
	}
	if d.borrow {
		d.tx = &d.curTx
	} else {
		d.tx = new(change.Tx)
	}
	*d.tx = change.Tx{XID: xid, FinalLSN: change.LSN(finalLSN), CommitTime: Time(int64(ts))}
	return Event{Kind: EventBegin, Tx: d.tx}, nil
}

// beginXID peeks at the xid of a Begin message for an error message.
func beginXID(r *reader) uint32 {
	p := *r
	p.uint64()
	p.uint64()
	return p.uint32()
}

// commit: Int8 flags (unused), Int64 commit LSN, Int64 end LSN, Int64 commit
// timestamp.
func (d *Decoder) commit(r *reader) (Event, error) {
	if d.tx == nil {
		return Event{}, msgErr('C', fmt.Errorf("%w: Commit outside a transaction", ErrOutOfOrder))
	}
	r.uint8()
	commitLSN := r.uint64()
	endLSN := r.uint64()
	ts := r.uint64()
	if err := readErr('C', r); err != nil {
		return Event{}, err
	}
	tx := d.tx
	tx.CommitLSN = change.LSN(commitLSN)
	tx.EndLSN = change.LSN(endLSN)
	tx.CommitTime = Time(int64(ts))
	d.tx = nil
	return Event{Kind: EventCommit, Tx: tx}, nil
}

// origin: Int64 commit LSN on the origin server, String origin name.
func (d *Decoder) origin(r *reader) (Event, error) {
	if d.tx == nil {
		return Event{}, msgErr('O', fmt.Errorf("%w: Origin outside a transaction", ErrOutOfOrder))
	}
	r.uint64()
	name := r.cstring()
	if err := readErr('O', r); err != nil {
		return Event{}, err
	}
	d.tx.Origin = string(name)
	return Event{}, nil
}

// typ: Int32 type OID, String namespace, String name.
func (d *Decoder) typ(r *reader) (Event, error) {
	oid := r.uint32()
	ns := r.cstring()
	name := r.cstring()
	if err := readErr('Y', r); err != nil {
		return Event{}, err
	}
	d.types[oid] = qualifiedType(ns, name)
	return Event{}, nil
}

// qualifiedType follows change.Column.TypeName: schema-qualified unless in
// pg_catalog.
func qualifiedType(ns, name []byte) string {
	if len(ns) == 0 || string(ns) == "pg_catalog" {
		return string(name)
	}
	return string(ns) + "." + string(name)
}

// typeName names a column type: from a Type message, else pgx's built-in
// types, else empty.
func (d *Decoder) typeName(oid uint32) string {
	if n, ok := d.types[oid]; ok {
		return n
	}
	if t, ok := d.builtins.TypeForOID(oid); ok {
		return t.Name
	}
	return ""
}

// relation: Int32 OID, String namespace, String name, Int8 replica identity,
// Int16 column count, then per column: Int8 flags (1 = key), String name,
// Int32 type OID, Int32 type modifier.
func (d *Decoder) relation(r *reader) (Event, error) {
	oid := r.uint32()
	ns := r.cstring()
	name := r.cstring()
	ident := r.uint8()
	ncols := int(r.uint16())
	if r.failed() {
		return Event{}, readErr('R', r)
	}
	// Each column takes at least 10 bytes: bound the allocation by the
	// message size before trusting the count.
	if ncols*10 > r.remaining() {
		return Event{}, offErr('R', len(r.b), fmt.Errorf("%w: %d columns announced, %d bytes left", ErrTruncated, ncols, r.remaining()))
	}
	rel := &change.Relation{
		OID:             oid,
		Schema:          string(ns),
		Name:            string(name),
		ReplicaIdentity: ident,
		Columns:         make([]change.Column, ncols),
	}
	for i := range rel.Columns {
		c := &rel.Columns[i]
		flags := r.uint8()
		cname := r.cstring()
		c.TypeOID = r.uint32()
		c.TypeMod = int32(r.uint32())
		if r.failed() {
			break
		}
		c.Key = flags&1 != 0
		c.Name = string(cname)
		c.TypeName = d.typeName(c.TypeOID)
	}
	if err := readErr('R', r); err != nil {
		return Event{}, err
	}
	d.relations[oid] = rel
	return Event{Kind: EventRelation, Relation: rel}, nil
}

// truncate: Int32 relation count, Int8 options (1 = CASCADE, 2 = RESTART
// IDENTITY), Int32 OID per relation.
func (d *Decoder) truncate(walStart change.LSN, r *reader) (Event, error) {
	if d.tx == nil {
		return Event{}, msgErr('T', fmt.Errorf("%w: Truncate outside a transaction", ErrOutOfOrder))
	}
	n := r.uint32()
	opts := r.uint8()
	if r.failed() {
		return Event{}, readErr('T', r)
	}
	if want, got := uint64(n)*4, uint64(r.remaining()); want != got {
		err := ErrMalformed
		if got < want {
			err = ErrTruncated
		}
		return Event{}, offErr('T', 1, fmt.Errorf("%w: %d relations announced, %d bytes of OIDs", err, n, got))
	}
	rels := make([]*change.Relation, n)
	for i := range rels {
		off := r.off
		oid := r.uint32()
		rel, ok := d.relations[oid]
		if !ok {
			return Event{}, offErr('T', off, fmt.Errorf("%w: %d", ErrUnknownRelation, oid))
		}
		rels[i] = rel
	}
	return Event{Kind: EventChange, Change: &change.Change{
		Op:  change.OpTruncate,
		LSN: walStart,
		Truncate: &change.Truncate{
			Relations:       rels,
			Cascade:         opts&1 != 0,
			RestartIdentity: opts&2 != 0,
		},
	}}, nil
}

// message: Int8 flags (1 = transactional), Int64 LSN, String prefix, Int32
// content length, content. (The xid field exists only in streamed
// transactions, which v1 does not have.)
func (d *Decoder) message(walStart change.LSN, r *reader) (Event, error) {
	flags := r.uint8()
	r.uint64()
	prefix := r.cstring()
	n := int32(r.uint32())
	if r.failed() {
		return Event{}, readErr('M', r)
	}
	if n < 0 {
		return Event{}, offErr('M', r.off-4, fmt.Errorf("%w: content length %d", ErrMalformed, n))
	}
	content := r.bytes(int(n))
	if err := readErr('M', r); err != nil {
		return Event{}, err
	}
	transactional := flags&1 != 0
	if transactional && d.tx == nil {
		return Event{}, msgErr('M', fmt.Errorf("%w: transactional message outside a transaction", ErrOutOfOrder))
	}
	return Event{Kind: EventChange, Change: &change.Change{
		Op:  change.OpMessage,
		LSN: walStart,
		Message: &change.Message{
			Transactional: transactional,
			Prefix:        string(prefix),
			Content:       append([]byte{}, content...),
		},
	}}, nil
}
