package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Apply does not send BEGIN on its own: it marks the batch's transaction
// due (Sink.begin) and the round trip that sends the first data statements
// — the pipeline of a segment, nearly always — begins it ahead of them
// (pgx.Batch.BeginTx), or the commit's does when the batch sent none. A
// batch of small transactions then costs two round trips (statements,
// commit) instead of three. Statements that cannot share a pipeline (COPY,
// catalog lookups, DDL) begin it first with a round trip of their own
// (inTx).

// asyncCommitSQL makes the open transaction commit asynchronously.
const asyncCommitSQL = "SET LOCAL synchronous_commit = off"

// beginSQL begins a batch's transaction, with asynchronous commit when on.
func (s *Sink) beginSQL() string {
	if s.async {
		return "BEGIN; " + asyncCommitSQL
	}
	return "BEGIN"
}

// inTx begins the batch's transaction now if it is due and not yet begun.
func (s *Sink) inTx(ctx context.Context) error {
	if !s.begin {
		return nil
	}
	s.begin = false
	s.begins++
	tx, err := s.conn.BeginTx(ctx, pgx.TxOptions{BeginQuery: s.beginSQL()})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	s.tx = tx
	return nil
}

// newBatch returns a pipeline for the open transaction; when the
// transaction is due but not begun, its first queries begin it, and
// begins says how many (their results come first).
func (s *Sink) newBatch() (b *pgx.Batch, begins int) {
	b = &pgx.Batch{}
	if !s.begin {
		return b, 0
	}
	b.BeginTx(pgx.TxOptions{})
	if s.async {
		b.Queue(asyncCommitSQL)
		return b, 2
	}
	return b, 1
}

// sendBatch sends a pipeline made by newBatch and reads the results of the
// queries that begin the transaction. The caller reads the rest and closes
// the results, also on error.
func (s *Sink) sendBatch(ctx context.Context, b *pgx.Batch, begins int) (pgx.BatchResults, error) {
	if begins == 0 {
		return s.tx.SendBatch(ctx, b), nil
	}
	br := s.conn.SendBatch(ctx, b)
	s.tx, s.begin = br.Tx(), false // Rollback after an error: see rollback
	for range begins {
		if _, err := br.Exec(); err != nil {
			return br, fmt.Errorf("begin: %w", err)
		}
	}
	return br, nil
}
