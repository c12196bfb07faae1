package trigger

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ackBatchRows bounds each DELETE of Ack, so no single statement holds its
// locks, WAL and dead tuples for long.
const ackBatchRows = 10_000

// ackSQL deletes up to $2 rows of the transactions visible in $1. The
// bound txid < xmax lets the txid index find them.
const ackSQL = `
DELETE FROM cdcd.change_log WHERE ctid = ANY (ARRAY(
	SELECT ctid FROM cdcd.change_log
	WHERE txid < pg_snapshot_xmax($1::pg_snapshot) AND pg_visible_in_snapshot(txid, $1::pg_snapshot)
	LIMIT $2))`

// Ack deletes the change-log rows of every transaction visible in upTo, in
// batches of ackBatchRows, each its own transaction. Call it only with a
// position whose transactions the trail holds durably (a Batch.Cur after its
// transactions were synced): deleted changes are gone from the source. It
// returns the number of rows deleted; after an error, calling it again with
// the same position finishes the work.
func Ack(ctx context.Context, conn Conn, upTo Snapshot) (int64, error) {
	if upTo.IsZero() {
		return 0, fmt.Errorf("acknowledge change log: %w", ErrNoPosition)
	}
	pos := upTo.String()
	var total int64
	for {
		tag, err := conn.Exec(ctx, ackSQL, pos, ackBatchRows)
		if err != nil {
			return total, fmt.Errorf("acknowledge change log up to %s: %w", pos, notInstalled(err))
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < ackBatchRows {
			return total, nil
		}
	}
}

// Start returns the current snapshot as the first position: Poll from it
// reads the transactions that commit after it (and those still running in
// it). Use Export instead when an initial copy of the tables must join up
// with the polls.
func Start(ctx context.Context, conn Conn) (Snapshot, error) {
	var text string
	var installed bool
	if err := conn.QueryRow(ctx, `SELECT pg_current_snapshot()::text, to_regclass('cdcd.change_log') IS NOT NULL`).Scan(&text, &installed); err != nil {
		return Snapshot{}, fmt.Errorf("take start position: %w", err)
	}
	if !installed {
		return Snapshot{}, fmt.Errorf("take start position: %w", notInstalledErr())
	}
	return ParseSnapshot(text)
}

// Earliest returns the first position of a new trail: a snapshot that sees
// none of the transactions that wrote the change log's rows, nor any
// transaction still running, so the first poll delivers every change the
// log holds (everything captured since install) and everything after it.
// Taking "now" instead (Start) would silently drop the changes captured
// between install and cdcd's first start.
//
// The snapshot is xmin:xmin: with xmin the lower of the oldest row's
// transaction id and the oldest transaction still running: every
// transaction below it has finished and wrote no row the log still holds.
func Earliest(ctx context.Context, conn Conn) (Snapshot, error) {
	var xmin *uint64
	var installed bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('cdcd.change_log') IS NOT NULL`).Scan(&installed); err != nil {
		return Snapshot{}, fmt.Errorf("take the first position: %w", err)
	}
	if !installed {
		return Snapshot{}, fmt.Errorf("take the first position: %w", notInstalledErr())
	}
	if err := conn.QueryRow(ctx, `SELECT least((SELECT txid FROM cdcd.change_log ORDER BY txid LIMIT 1), pg_snapshot_xmin(pg_current_snapshot()))::text::bigint`).
		Scan(&xmin); err != nil {
		return Snapshot{}, fmt.Errorf("take the first position: %w", err)
	}
	return Snapshot{Xmin: *xmin, Xmax: *xmin}, nil
}

// notInstalledErr is ErrNotInstalled with the remedy, without a server error.
func notInstalledErr() error {
	return fmt.Errorf("%w: table %s is missing: run %s first", ErrNotInstalled, logTable, remedy)
}

// Export is a snapshot exported for an initial copy, together with the
// position that polling starts from: both are the same snapshot, so the copy
// holds exactly the transactions the polls will not deliver.
type Export struct {
	// Position is the first position to Poll from.
	Position Snapshot
	// Name is the exported snapshot's identifier: each copy transaction runs
	// SET TRANSACTION SNAPSHOT '<Name>' as its first statement (in a
	// REPEATABLE READ transaction) while the Export is open.
	Name string

	tx pgx.Tx
}

// StartExport opens a REPEATABLE READ transaction on conn, which it keeps
// until Close, and exports its snapshot. conn must not be used for anything
// else until Close.
func StartExport(ctx context.Context, conn *pgx.Conn) (*Export, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("export snapshot: begin: %w", err)
	}
	var text, name string
	var installed bool
	// One statement: the transaction snapshot is taken by it, and both
	// functions report that snapshot.
	err = tx.QueryRow(ctx, `SELECT pg_current_snapshot()::text, pg_export_snapshot(), to_regclass('cdcd.change_log') IS NOT NULL`).
		Scan(&text, &name, &installed)
	if err == nil && !installed {
		err = notInstalledErr()
	}
	var pos Snapshot
	if err == nil {
		pos, err = ParseSnapshot(text)
	}
	if err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("export snapshot: %w", err)
	}
	return &Export{Position: pos, Name: name, tx: tx}, nil
}

// Close ends the exporting transaction; the snapshot can no longer be
// imported afterwards (those who imported it keep it).
func (e *Export) Close(ctx context.Context) error {
	if e.tx == nil {
		return nil
	}
	err := e.tx.Rollback(ctx)
	e.tx = nil
	if err != nil {
		return fmt.Errorf("close exported snapshot: %w", err)
	}
	return nil
}
