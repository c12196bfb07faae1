package change

// Op is the kind of a Change.
type Op uint8

// The change operations.
const (
	OpInsert Op = iota + 1
	OpUpdate
	OpDelete
	OpTruncate
	OpMessage
)

var opNames = [...]string{"?", "insert", "update", "delete", "truncate", "message"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "?"
}

// Change is one event inside (or, for a non-transactional logical message,
// outside) a source transaction.
type Change struct {
	// Op says which of the fields below are set.
	Op Op
	// LSN is the WAL position of the message that carried this change
	// (informational: positions to resume from are transaction EndLSNs).
	LSN LSN
	// Relation is the table changed by an insert, update or delete.
	Relation *Relation
	// Old is the old row of an update or delete, nil when the source did not
	// send one. With OldKeyOnly, only the key columns hold values and the
	// others are ValueAbsent.
	Old Row
	// OldKeyOnly reports that Old is an old-key ('K') tuple rather than a
	// full old row ('O', REPLICA IDENTITY FULL).
	OldKeyOnly bool
	// New is the new row of an insert or update. Columns whose TOASTed value
	// did not change are ValueUnchanged.
	New Row
	// Truncate holds the truncated relations and flags of an OpTruncate.
	Truncate *Truncate
	// Message holds the logical decoding message of an OpMessage.
	Message *Message
}

// Truncate is a TRUNCATE of one or more relations.
type Truncate struct {
	Relations       []*Relation
	Cascade         bool
	RestartIdentity bool
}

// Message is a logical decoding message (pg_logical_emit_message).
type Message struct {
	// Transactional messages are part of their transaction; the others are
	// delivered immediately, outside any Begin/Commit.
	Transactional bool
	Prefix        string
	Content       []byte
}

// Row is a tuple: one Value per column of its Relation, in the same order.
type Row []Value
