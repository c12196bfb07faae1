// Package sink defines what an apply worker writes to: a Sink takes batches
// of whole source transactions. Optional abilities are separate small
// interfaces, checked with a type assertion:
//
//   - PositionStore: the sink stores the batch position atomically with the
//     data (exactly-once); otherwise apply keeps a checkpoint file and
//     delivery is at-least-once.
//   - AsyncCommitter: a PositionStore whose commits become durable after
//     they are visible; apply reports only durable positions.
//   - BatchPacer: the sink's batches have a fixed cost high enough that
//     apply should not close one the moment its reader catches up.
//
// Implementations live in sub-packages named after the technology
// (sink/postgres, sink/stdout, …).
package sink

import (
	"context"
	"errors"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// Position is where a sink is in the trail: the last record applied.
type Position struct {
	// Seq is the trail sequence number of the last record applied (the
	// COMMIT of the last complete transaction); apply resumes after it.
	Seq uint64
	// EndLSN is the source end LSN of that transaction.
	EndLSN change.LSN
}

// Tx is one source transaction (or, when its batch is Partial, the part of
// it read so far).
type Tx struct {
	// Tx holds the commit information (complete only when the COMMIT was read).
	Tx *change.Tx
	// Changes are the transaction's changes in source order.
	Changes []*change.Change
}

// Batch is a group of source transactions applied together.
type Batch struct {
	// Txs are in commit order.
	Txs []Tx
	// Partial means the batch ends inside its last transaction, which is too
	// large for one batch: the sink must keep that transaction open (on
	// targets with transactions) and the next Apply continues it. Position is
	// then the position of the last complete transaction, or zero.
	Partial bool
	// Position is the position after the batch, for PositionStore sinks to
	// record atomically with the data.
	Position Position
	// Rows is the number of row changes in the batch.
	Rows int
	// Bytes is the approximate size of the batch's values.
	Bytes int
	// Snapshot marks a batch of snapshot rows (inserts without a source
	// transaction) from a sink without the BulkLoader ability; Position is
	// then the sink's current position, unchanged.
	Snapshot bool
}

// Sink writes batches. Apply calls it from one goroutine.
type Sink interface {
	// Apply writes b. For a transactional sink, a batch that is not Partial
	// ends with a commit covering the whole batch (and the position, for a
	// PositionStore); on error nothing of the uncommitted work remains.
	Apply(ctx context.Context, b *Batch) error
	// Close releases connections. An open Partial transaction is rolled back.
	Close(ctx context.Context) error
}

// PositionStore is a sink that stores its position in the same atomic write
// as the data, so a crash at any instant neither loses nor duplicates.
type PositionStore interface {
	// Position returns the last position stored by a committed batch; the
	// zero Position when the sink has none yet.
	Position(ctx context.Context) (Position, error)
}

// AsyncCommitter is a PositionStore whose commits become durable some time
// after they are visible (PostgreSQL's asynchronous commit): a target crash
// may lose the last committed batches, position included, and apply then
// re-applies them from the trail. Apply reports, purges the trail below and
// acknowledges the source only up to the position the sink calls durable.
type AsyncCommitter interface {
	PositionStore
	// Durable returns the last committed position known to be durable on
	// the target, as learned by the last Apply or Position without another
	// round trip; the zero Position while none is known.
	Durable() Position
	// RefreshDurable asks the target how far it is durable (one round
	// trip when a committed position is not yet known durable) and returns
	// Durable.
	RefreshDurable(ctx context.Context) (Position, error)
}

// BatchPacer is a sink whose every batch has a fixed cost high enough to
// matter while changes stream in (a Kafka transaction: its round trips, its
// checkpoint record and the broker's commit markers). Apply closes a batch
// as soon as its reader has caught up with the trail; for a BatchPacer it
// waits until the batch is MinBatchDelay old (at most the worker's
// MaxDelay), unless rows or bytes fill it first, so a sink that keeps up
// with capture still gets batches of many source transactions.
type BatchPacer interface {
	// MinBatchDelay is how long after its first change a batch may be
	// held open for more transactions; zero or negative: not at all.
	MinBatchDelay() time.Duration
}

// RetriableError marks an error that a retry (after backoff, from the last
// position) can cure: connection loss, serialization failure, deadlock.
type RetriableError struct{ Err error }

func (e *RetriableError) Error() string { return e.Err.Error() }
func (e *RetriableError) Unwrap() error { return e.Err }

// Retriable wraps err as retriable.
func Retriable(err error) error {
	if err == nil {
		return nil
	}
	return &RetriableError{Err: err}
}

// IsRetriable reports whether err is marked retriable. Unmarked errors are
// terminal: the sink stops with its message.
func IsRetriable(err error) bool {
	var r *RetriableError
	return errors.As(err, &r)
}

// HeartbeatPrefix is the logical message prefix of capture's heartbeats:
// sinks skip such messages (their transactions still move the position).
const HeartbeatPrefix = "cdcd.heartbeat"
