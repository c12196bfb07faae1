package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// Asynchronous commit, as PostgreSQL's own logical replication apply worker
// does it: each batch's transaction runs with synchronous_commit = off, so
// COMMIT returns once the commit record is in the target's WAL buffers, not
// once it is flushed. The position row still commits with the rows, so the
// target holds both or neither at any instant, crash or not; what changes is
// that a target crash may take back the last commits. The sink therefore
// calls a position durable only once the target's WAL is flushed past its
// commit: COMMIT is followed, in the same round trip, by
// pg_current_wal_insert_lsn() — taken after the commit record was inserted,
// so at or past its end — and pg_current_wal_flush_lsn(). (Not
// pg_current_wal_lsn(): that is the write position, which an asynchronous
// commit need not have reached.) A position is durable once a flush LSN read
// later reaches its insert LSN. After a target crash the checkpoint row is
// an older, durable one — never older than what was reported durable — and
// apply re-applies the rest from the trail, which was purged only below the
// durable position.

// commitWait is a committed position and the target's WAL insert position
// read after its commit: durable once the flush position reaches lsn.
type commitWait struct {
	pos sink.Position
	lsn change.LSN
}

// walPositionsSQL reads the WAL insert and flush positions.
const walPositionsSQL = "SELECT pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text"

// Durable returns the last committed position known durable on the target
// (every committed position when commits are synchronous).
func (s *Sink) Durable() sink.Position { return s.durable }

// RefreshDurable reads the target's WAL flush position when a committed
// position is not yet known durable, and returns Durable.
func (s *Sink) RefreshDurable(ctx context.Context) (sink.Position, error) {
	if len(s.waits) == 0 {
		return s.durable, nil
	}
	if s.conn == nil || s.conn.IsClosed() {
		return s.durable, sink.Retriable(s.errorf("the connection is closed: recreate the sink"))
	}
	var flush string
	if err := s.conn.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&flush); err != nil {
		return s.durable, classify(s.errorf("reading the WAL flush position: %w", err), s.conn.IsClosed())
	}
	lsn, err := change.ParseLSN(flush)
	if err != nil {
		return s.durable, s.errorf("reading the WAL flush position: %w", err)
	}
	s.flushed(lsn)
	return s.durable, nil
}

// committed records p as committed, with the WAL insert and flush positions
// read after its commit (both zero for a synchronous commit: durable now).
func (s *Sink) committed(p sink.Position, insert, flush change.LSN) {
	if !s.async {
		s.durable = p
		return
	}
	if n := len(s.waits); n == 0 || s.waits[n-1].pos.Seq < p.Seq {
		s.waits = append(s.waits, commitWait{pos: p, lsn: insert})
	}
	s.flushed(flush)
}

// flushed marks durable the committed positions whose commit the flush
// position covers.
func (s *Sink) flushed(flush change.LSN) {
	n := 0
	for n < len(s.waits) && s.waits[n].lsn <= flush {
		n++
	}
	if n == 0 {
		return
	}
	s.durable = s.waits[n-1].pos
	s.waits = append(s.waits[:0], s.waits[n:]...)
}

// setupAsync decides whether batches commit asynchronously: on a plain
// PostgreSQL target (Citus commits on its workers, whose WAL the
// coordinator's flush position does not cover) unless Config.SyncCommit,
// and only when the target reports its WAL positions.
func (s *Sink) setupAsync(ctx context.Context) {
	if s.cfg.SyncCommit || s.cfg.Flavor != FlavorPostgres {
		return
	}
	var insert, flush string
	if err := s.conn.QueryRow(ctx, walPositionsSQL).Scan(&insert, &flush); err != nil {
		s.log.Warn("postgres sink: the target does not report its WAL positions; committing synchronously",
			"target", s.desc, "error", err)
		return
	}
	s.async = true
}

// commit stores p in the checkpoint table and commits the open transaction,
// in one round trip; with asynchronous commit the same round trip reads the
// WAL positions that tell when the commit is durable; when no statement
// began the batch's transaction, the same round trip begins it too. On
// error the transaction is left for rollback unless it is over.
//
// The checkpoint write is checked (see errCheckpointMoved): it updates the
// row only if it is still what this sink read or wrote last, and otherwise
// fails with a division by zero, which makes the server skip the COMMIT of
// the same round trip and abort the transaction.
func (s *Sink) commit(ctx context.Context, p sink.Position) error {
	store, err := s.positionSQL(p)
	if err != nil {
		return err
	}
	q := store + ";\nCOMMIT"
	if s.async {
		q += ";\n" + walPositionsSQL
	}
	if s.begin {
		q = s.beginSQL() + ";\n" + q
		s.begin = false
	}
	res, err := s.conn.PgConn().Exec(ctx, q).ReadAll()
	if s.conn.PgConn().TxStatus() == 'I' {
		s.tx, s.ddl = nil, false // committed, or rolled back by the server
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if !committedIn(res) && errors.As(err, &pgErr) && pgErr.Code == "22012" /* division_by_zero */ {
			return s.checkpointMoved(p)
		}
		return fmt.Errorf("storing position %d (%s) in %s and committing: %w", p.Seq, p.EndLSN, s.cfg.CheckpointTable, err)
	}
	c := commitIndex(res)
	if c < 0 {
		return errors.New("commit: the transaction was rolled back")
	}
	s.stored = checkpointRow{exists: true, pos: p}
	var insert, flush change.LSN
	if s.async {
		if len(res) != c+2 || len(res[c+1].Rows) != 1 || len(res[c+1].Rows[0]) != 2 {
			return errors.New("commit: reading the WAL positions: unexpected result")
		}
		row := res[c+1].Rows[0]
		if insert, flush, err = parseWALPositions(string(row[0]), string(row[1])); err != nil {
			return err
		}
	}
	s.committed(p, insert, flush)
	return nil
}

// checkpointMoved is the retriable error of a checked checkpoint write that
// found the row moved.
func (s *Sink) checkpointMoved(p sink.Position) error {
	return sink.Retriable(fmt.Errorf("storing position %d (%s) in %s: %w", p.Seq, p.EndLSN, s.cfg.CheckpointTable, errCheckpointMoved))
}

// parseWALPositions parses walPositionsSQL's insert and flush positions.
func parseWALPositions(insert, flush string) (il, fl change.LSN, err error) {
	if il, err = change.ParseLSN(insert); err == nil {
		fl, err = change.ParseLSN(flush)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("commit: reading the WAL positions: %w", err)
	}
	return il, fl, nil
}

// committedIn reports whether a round trip's results include a COMMIT.
func committedIn(res []*pgconn.Result) bool { return commitIndex(res) >= 0 }

// commitIndex is the index of a round trip's COMMIT result, -1 when none
// (a COMMIT of an aborted transaction reports ROLLBACK).
func commitIndex(res []*pgconn.Result) int {
	for i, r := range res {
		if r.CommandTag.String() == "COMMIT" {
			return i
		}
	}
	return -1
}

// positionSQL upserts the sink's checkpoint row, its values inlined so that
// it can share a round trip with COMMIT, provided the row is still as
// s.stored says; when it is not, the statement fails with a division by
// zero. (On PostgreSQL the upsert waits for a transaction that holds the
// row and compares with what it committed.)
func (s *Sink) positionSQL(p sink.Position) (string, error) {
	if p.Seq > math.MaxInt64 {
		return "", fmt.Errorf("position seq %d does not fit the checkpoint table's bigint", p.Seq)
	}
	old := s.stored
	cond := "false"
	if old.exists {
		cond = "c.seq = " + strconv.FormatUint(old.pos.Seq, 10) + " AND c.end_lsn = '" + old.pos.EndLSN.String() + "'::pg_lsn"
	}
	return "WITH up AS (INSERT INTO " + s.checkpoint + ` AS c (name, seq, end_lsn, updated_at)
VALUES (` + quoteLiteral(s.cfg.Name) + ", " + strconv.FormatUint(p.Seq, 10) + ", '" + p.EndLSN.String() + `'::pg_lsn, now())
ON CONFLICT (name) DO UPDATE SET seq = EXCLUDED.seq, end_lsn = EXCLUDED.end_lsn, updated_at = EXCLUDED.updated_at
WHERE ` + cond + ` RETURNING 1)
SELECT 1 / count(*) FROM up`, nil
}

// positionArgsSQL is positionSQL with parameters, for a pipeline, where
// it is prepared once rather than once per position.
func (s *Sink) positionArgsSQL(p sink.Position) (string, []any) {
	old := s.stored
	cond, args := "false", []any{s.cfg.Name, int64(p.Seq), p.EndLSN.String()}
	if old.exists {
		cond = "c.seq = $4::bigint AND c.end_lsn = $5::text::pg_lsn"
		args = append(args, int64(old.pos.Seq), old.pos.EndLSN.String())
	}
	return "WITH up AS (INSERT INTO " + s.checkpoint + ` AS c (name, seq, end_lsn, updated_at)
VALUES ($1::text, $2::bigint, $3::text::pg_lsn, now())
ON CONFLICT (name) DO UPDATE SET seq = EXCLUDED.seq, end_lsn = EXCLUDED.end_lsn, updated_at = EXCLUDED.updated_at
WHERE ` + cond + ` RETURNING 1)
SELECT 1 / count(*) FROM up`, args
}

// quoteLiteral quotes s as an SQL string literal whatever
// standard_conforming_strings says (an E” literal, quotes and backslashes
// doubled).
func quoteLiteral(s string) string {
	return "E'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
}

// readPosition reads the sink's checkpoint row; with asynchronous commit it
// also reads the WAL positions, since the row read may be a commit not yet
// flushed: it is durable once the flush position reaches the insert
// position read after it.
func (s *Sink) readPosition(ctx context.Context) (sink.Position, error) {
	var (
		seq            *int64
		lsn            *string
		insert, flush  string
		p              sink.Position
		err            error
		positionsQuery = "SELECT (SELECT seq FROM " + s.checkpoint + " WHERE name = $1), (SELECT end_lsn::text FROM " + s.checkpoint + " WHERE name = $1)"
	)
	if s.async {
		err = s.conn.QueryRow(ctx, positionsQuery+", pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text", s.cfg.Name).Scan(&seq, &lsn, &insert, &flush)
	} else {
		err = s.conn.QueryRow(ctx, positionsQuery, s.cfg.Name).Scan(&seq, &lsn)
	}
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && seq == nil) {
		s.stored = checkpointRow{}
		return p, nil
	}
	if err != nil {
		return p, err
	}
	if p.EndLSN, err = change.ParseLSN(*lsn); err != nil {
		return p, err
	}
	p.Seq = uint64(*seq)
	var il, fl change.LSN
	if s.async {
		if il, err = change.ParseLSN(insert); err == nil {
			fl, err = change.ParseLSN(flush)
		}
		if err != nil {
			return p, fmt.Errorf("reading the WAL positions: %w", err)
		}
	}
	s.stored = checkpointRow{exists: true, pos: p}
	s.committed(p, il, fl)
	return p, nil
}
