// Package source is the seam between capture and the databases it reads:
// a Source yields whole source transactions, in commit order, as a stream
// of events, and takes acknowledgements of what the trail holds durably.
//
// Implementations live in sub-folders named after the technology:
// source/postgres (pgoutput logical replication) and source/trigger
// (change-log tables filled by triggers, for databases where logical
// decoding is not allowed). Capture, the trail and every sink see only this
// interface.
//
// Positions are change.LSN values: for pgoutput the real WAL positions, for
// other sources a monotone counter the source maps to its own position (a
// trigger source's snapshot) in a state file of its own. Capture stores
// each transaction's EndLSN in the trail and resumes from the last durable
// one.
package source

import (
	"context"
	"errors"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// Kind says what an Event carries.
type Kind uint8

const (
	// None: nothing arrived before the deadline.
	None Kind = iota
	// Begin: a transaction starts; Event.Tx has its XID and FinalLSN. A
	// transaction forwarded before its commit (a large one, so that apply
	// can start on it early) has FinalLSN 0: its Commit says where it
	// commits, and it may end in a Withdraw instead.
	Begin
	// Relation: a table's schema, before its first change in a session and
	// after every change of its columns; Event.Relation, primary key filled.
	Relation
	// Change: an insert, update, delete, truncate or logical message in
	// Event.Change (a message outside a transaction stands alone).
	Change
	// Commit: the transaction ends; Event.Tx is the Begin's pointer, now
	// with CommitLSN, EndLSN and CommitTime (for a forwarded transaction,
	// a new Tx with FinalLSN too).
	Commit
	// Withdraw: the open transaction, forwarded before its commit, is taken
	// back: drop what was written of it. If it commits, it arrives again
	// whole, later.
	Withdraw
)

// Event is one item of a source's stream. Only the field Kind names is set.
// A Change, and a Begin's or Commit's Tx, may be valid only until the next
// call of Next (the pgoutput source decodes into reused buffers, its values
// aliasing the received message): a caller that keeps one copies it.
type Event struct {
	Kind     Kind
	Tx       *change.Tx
	Relation *change.Relation
	Change   *change.Change
	// Bytes is about how much source data the event took (for group-commit
	// sizing).
	Bytes int
}

// Source is one session with a source. It is not safe for concurrent use:
// capture calls it from one goroutine (pgoutput receives and acknowledges
// on one connection).
type Source interface {
	// Start positions the stream just after held, the EndLSN of the last
	// transaction the trail (or capture's ack checkpoint) holds durably; 0
	// for a new trail. It returns the position streaming starts from. A
	// source that has acknowledged more than held returns an error wrapping
	// ErrAhead: data was acknowledged but never stored.
	Start(ctx context.Context, held change.LSN) (change.LSN, error)
	// Next returns the next event, or an event of kind None once deadline
	// passes (or ctx ends) first. Transactions arrive whole and in commit
	// order, except that one may be forwarded before its commit and then
	// withdrawn (Withdraw); a transaction at or below held may be
	// re-delivered (capture skips it).
	Next(ctx context.Context, deadline time.Time) (Event, error)
	// Ack tells the source that the trail holds durably every transaction
	// ending at or below pos (never more: it may free the source's copy).
	// When idle (no transaction open, nothing unsynced) a source may report
	// a position of its own past pos that capture may adopt; capture
	// stores it in its ack checkpoint before passing it to Ack.
	Ack(ctx context.Context, pos change.LSN, idle bool) (adoptable change.LSN, err error)
	// Close ends the session.
	Close() error
}

// Identity names the source a trail belongs to: a trail is never continued
// from another source.
type Identity struct {
	// Kind is the source kind, "postgres" or "trigger" (shown by
	// `cdcd trail dump`).
	Kind string
	// SystemID identifies the source database (pgoutput: the cluster's
	// system identifier); 0 when unknown.
	SystemID uint64
}

// Opener opens a session with a source and says which source it is.
type Opener func(ctx context.Context) (Source, Identity, error)

// ErrAhead is wrapped by Start when the source has acknowledged more than
// the trail holds.
var ErrAhead = errors.New("source acknowledged past the trail")
