package decode

import (
	"fmt"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// Stream describes a message of protocol v2's streaming of in-progress
// transactions (EventStreamStart, EventStreamData, EventStreamAbort).
type Stream struct {
	// XID is the top-level transaction's xid for Stream Start and Stream
	// Abort; for EventStreamData, the xid the message carries: the
	// (sub)transaction that made the change (the top-level xid for Origin).
	XID uint32
	// SubXID is, for Stream Abort, the aborted subtransaction (equal to XID
	// when the whole transaction aborted).
	SubXID uint32
	// First is set on the Stream Start of a transaction's first segment.
	First bool
	// Type and Body are an EventStreamData's message as it would read
	// outside a stream: the type byte, then the fields after the xid. Body
	// aliases the caller's buffer: copy it before the next Decode.
	Type byte
	Body []byte
}

// InStream reports whether a Stream Start has been decoded without its
// Stream Stop.
func (d *Decoder) InStream() bool { return d.inStream }

// streamStart: Int32 xid, Int8 first segment (1) or not (0).
func (d *Decoder) streamStart(r *reader) (Event, error) {
	if d.inStream || d.tx != nil {
		return Event{}, msgErr('S', fmt.Errorf("%w: Stream Start inside a stream or transaction", ErrOutOfOrder))
	}
	xid := r.uint32()
	first := r.uint8()
	if err := readErr('S', r); err != nil {
		return Event{}, err
	}
	d.inStream, d.streamXID = true, xid
	return Event{Kind: EventStreamStart, Stream: &Stream{XID: xid, First: first == 1}}, nil
}

// streamStop: no fields.
func (d *Decoder) streamStop(r *reader) (Event, error) {
	if !d.inStream {
		return Event{}, msgErr('E', fmt.Errorf("%w: Stream Stop outside a stream", ErrOutOfOrder))
	}
	if err := readErr('E', r); err != nil {
		return Event{}, err
	}
	d.inStream = false
	return Event{Kind: EventStreamStop}, nil
}

// streamCommit: Int32 xid, Int8 flags (unused), Int64 commit LSN, Int64 end
// LSN, Int64 commit timestamp. It comes outside any stream block.
func (d *Decoder) streamCommit(r *reader) (Event, error) {
	if d.inStream || d.tx != nil {
		return Event{}, msgErr('c', fmt.Errorf("%w: Stream Commit inside a stream or transaction", ErrOutOfOrder))
	}
	xid := r.uint32()
	r.uint8()
	commitLSN := r.uint64()
	endLSN := r.uint64()
	ts := r.uint64()
	if err := readErr('c', r); err != nil {
		return Event{}, err
	}
	return Event{Kind: EventStreamCommit, Tx: &change.Tx{
		XID:        xid,
		FinalLSN:   change.LSN(commitLSN),
		CommitLSN:  change.LSN(commitLSN),
		EndLSN:     change.LSN(endLSN),
		CommitTime: Time(int64(ts)),
	}}, nil
}

// streamAbort: Int32 xid, Int32 subtransaction xid (protocol v2; v4's
// abort LSN and time are not requested). It comes outside any stream block.
func (d *Decoder) streamAbort(r *reader) (Event, error) {
	if d.inStream || d.tx != nil {
		return Event{}, msgErr('A', fmt.Errorf("%w: Stream Abort inside a stream or transaction", ErrOutOfOrder))
	}
	xid := r.uint32()
	sub := r.uint32()
	if err := readErr('A', r); err != nil {
		return Event{}, err
	}
	return Event{Kind: EventStreamAbort, Stream: &Stream{XID: xid, SubXID: sub}}, nil
}

// streamData splits a message inside a stream block: every data message
// (Insert, Update, Delete, Truncate, Relation, Type, Message) carries an
// Int32 xid right after its type byte; Origin does not.
func (d *Decoder) streamData(data []byte) (Event, error) {
	t := data[0]
	switch t {
	case 'O':
		return Event{Kind: EventStreamData, Stream: &Stream{XID: d.streamXID, Type: t, Body: data[1:]}}, nil
	case 'I', 'U', 'D', 'T', 'R', 'Y', 'M':
	default:
		return Event{}, msgErr(t, fmt.Errorf("%w: inside a stream block", ErrOutOfOrder))
	}
	r := reader{b: data, off: 1}
	xid := r.uint32()
	if r.failed() {
		return Event{}, readErr(t, &r)
	}
	return Event{Kind: EventStreamData, Stream: &Stream{XID: xid, Type: t, Body: data[5:]}}, nil
}

// Replay opens tx, a streamed transaction at its Stream Commit, so that its
// spooled messages (each Stream.Type followed by Stream.Body) can be fed to
// Decode as those of an ordinary transaction. EndReplay closes it.
func (d *Decoder) Replay(tx *change.Tx) error {
	if d.inStream || d.tx != nil {
		return fmt.Errorf("replay streamed transaction %d: %w: inside a stream or transaction", tx.XID, ErrOutOfOrder)
	}
	d.tx = tx
	return nil
}

// EndReplay closes the transaction Replay opened and returns it.
func (d *Decoder) EndReplay() *change.Tx {
	tx := d.tx
	d.tx = nil
	return tx
}

// DecodeStreamed decodes s, a data message of an open stream block (an
// EventStreamData's Stream), at once as a message of tx — the streamed
// transaction, forwarded before its Stream Commit by a caller that can take
// it back if it aborts. Events borrow as Decode's do (NewBorrowing). A
// Relation message replaces the cached relation, as outside a stream: a
// caller that may take the transaction back keeps the one it replaced
// (Relation) and puts it back with RestoreRelation.
func (d *Decoder) DecodeStreamed(tx *change.Tx, walStart change.LSN, s *Stream) (Event, error) {
	if !d.inStream || d.tx != nil {
		return Event{}, fmt.Errorf("decode streamed message of transaction %d: %w: outside a stream block", tx.XID, ErrOutOfOrder)
	}
	d.tx = tx
	defer func() { d.tx = nil }()
	switch s.Type {
	case 'I', 'U', 'D', 'R', 'Y', 'O', 'T', 'M':
		r := reader{b: s.Body}
		return d.data(s.Type, walStart, &r)
	}
	return Event{}, msgErr(s.Type, fmt.Errorf("%w: inside a stream block", ErrOutOfOrder))
}

// RestoreRelation puts rel back as the cached relation of oid (nil: none),
// undoing a Relation message of a forwarded transaction that was taken
// back (DecodeStreamed).
func (d *Decoder) RestoreRelation(oid uint32, rel *change.Relation) {
	if rel == nil {
		delete(d.relations, oid)
		return
	}
	d.relations[oid] = rel
}
