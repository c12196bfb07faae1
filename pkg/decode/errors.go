package decode

import (
	"errors"
	"fmt"
)

// Errors returned by Decode, wrapped with the message type and, where it
// helps, the byte offset in the message (test them with errors.Is). None is
// retriable on the same stream: the caller should Reset the Decoder and
// restart replication from its last durable position.
var (
	// ErrTruncated is returned when a message ends before its last field.
	ErrTruncated = errors.New("message truncated")
	// ErrMalformed is returned for a message whose bytes break the protocol:
	// bytes after the last field, an unknown tuple or column marker, a
	// negative length, a tuple whose column count differs from its relation's.
	ErrMalformed = errors.New("malformed message")
	// ErrUnknownRelation is returned for a change (or truncate) naming a
	// relation OID no Relation message announced in this session.
	ErrUnknownRelation = errors.New("unknown relation OID")
	// ErrOutOfOrder is returned for a message that is not allowed in the
	// current transaction state: Begin inside a transaction; Commit, Origin,
	// a row change, Truncate or a transactional logical message outside one.
	// After a reconnect mid-transaction, call Reset to avoid it.
	ErrOutOfOrder = errors.New("message out of transaction order")
	// ErrUnknownMessage is returned for a message type byte that is not part
	// of the pgoutput protocol.
	ErrUnknownMessage = errors.New("unknown message type")
	// ErrUnsupported is returned for the two-phase commit (protocol v3)
	// messages, which this decoder does not handle.
	ErrUnsupported = errors.New("two-phase messages not supported: start replication with two_phase off")
)

// msgName names a message type the way PostgreSQL's protocol docs do.
func msgName(t byte) string {
	switch t {
	case 'B':
		return "Begin"
	case 'C':
		return "Commit"
	case 'O':
		return "Origin"
	case 'R':
		return "Relation"
	case 'Y':
		return "Type"
	case 'I':
		return "Insert"
	case 'U':
		return "Update"
	case 'D':
		return "Delete"
	case 'T':
		return "Truncate"
	case 'M':
		return "Message"
	case 'S':
		return "Stream Start"
	case 'E':
		return "Stream Stop"
	case 'c':
		return "Stream Commit"
	case 'A':
		return "Stream Abort"
	case 'b':
		return "Begin Prepare"
	case 'P':
		return "Prepare"
	case 'K':
		return "Commit Prepared"
	case 'r':
		return "Rollback Prepared"
	case 'p':
		return "Stream Prepare"
	}
	return fmt.Sprintf("0x%02x", t)
}

// msgErr wraps err with the message type.
func msgErr(t byte, err error) error {
	return fmt.Errorf("decode pgoutput %s message: %w", msgName(t), err)
}

// offErr wraps err with the message type and the byte offset (from the start
// of the message, type byte included) where decoding failed.
func offErr(t byte, off int, err error) error {
	return fmt.Errorf("decode pgoutput %s message at byte %d: %w", msgName(t), off, err)
}

// readErr reports why r stopped: it ran out of bytes, or bytes are left over.
// It returns nil when r consumed the message exactly.
func readErr(t byte, r *reader) error {
	if r.failed() {
		return offErr(t, r.failOff, ErrTruncated)
	}
	if n := r.remaining(); n > 0 {
		return offErr(t, r.off, fmt.Errorf("%w: %d bytes after the last field", ErrMalformed, n))
	}
	return nil
}
