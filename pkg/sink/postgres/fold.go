package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// A batch that begins and ends its target transaction — not Partial, no
// earlier chunk open — and whose last step is a segment runs in one round
// trip: BEGIN, the segment's statements, the checkpoint write, COMMIT and
// the WAL positions, pipelined. The one thing such a pipeline cannot do is
// look at a statement's outcome before COMMIT: the UPDATE of full rows
// (upsert) must be followed by an upsert of the keys it missed. Here that
// UPDATE is guarded instead — it fails with a division by zero when it
// updates fewer rows than it was given — so a miss aborts the whole
// transaction, position included, before COMMIT; the batch is then applied
// again the usual way, and the fold stays off for foldPause batches, in
// case misses continue (a stream applied over a newer copy).

// foldPause is how many batches skip the fold after a guarded UPDATE missed.
const foldPause = 100

// errFoldMissed is returned by a folded commit whose guarded UPDATE missed
// keys: nothing of the batch was committed.
var errFoldMissed = errors.New("a full-row update missed keys on the target")

// foldable reports whether b may be applied in one round trip.
func (s *Sink) foldable(b *sink.Batch, steps []step) bool {
	if s.cfg.Flavor != FlavorPostgres || b.Partial || s.tx != nil || len(steps) == 0 || steps[len(steps)-1].Segment == nil {
		return false
	}
	if s.foldOff > 0 {
		s.foldOff--
		return false
	}
	return true
}

// guardSQL makes an UPDATE fail unless it updates $n rows.
func guardSQL(update string, n int) string {
	return "WITH u AS (" + update + " RETURNING 1) SELECT 1 / (count(*) = $" + strconv.Itoa(n) + "::int)::int FROM u"
}

// foldedSegment runs the last segment of a batch and commits p in the same
// round trip (see above). Statements a pipeline cannot carry (COPY) run
// before it as usual; with nothing left to pipeline it commits as commit
// does.
func (s *Sink) foldedSegment(ctx context.Context, seg *segment, p sink.Position) error {
	if err := s.queueSegment(ctx, seg); err != nil {
		return err
	}
	if len(s.queued) == 0 {
		return s.commit(ctx, p)
	}
	if p.Seq > math.MaxInt64 {
		return fmt.Errorf("position seq %d does not fit the checkpoint table's bigint", p.Seq)
	}
	queued := s.queued
	s.queued = s.queued[:0]
	defer clear(queued) // the arguments alias the batch's rows
	b, begins := s.newBatch()
	for _, st := range queued {
		if st.upsert != nil {
			b.Queue(guardSQL(st.sql, len(st.args)+1), append(st.args, len(st.upsert))...)
		} else {
			b.Queue(st.sql, st.args...)
		}
	}
	storeSQL, storeArgs := s.positionArgsSQL(p)
	b.Queue(storeSQL, storeArgs...)
	b.Queue("COMMIT")
	if s.async {
		b.Queue(walPositionsSQL)
	}
	s.statements += len(queued)
	if len(queued) > 1 {
		s.pipelines++
	}
	br, err := s.sendBatch(ctx, b, begins)
	defer func() {
		if s.conn.PgConn().TxStatus() == 'I' {
			s.tx, s.ddl = nil, false // committed, or rolled back by the server
		}
	}()
	if err != nil {
		_ = br.Close()
		return err
	}
	for _, st := range queued {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			var pgErr *pgconn.PgError
			if st.upsert != nil && errors.As(err, &pgErr) && pgErr.Code == "22012" /* division_by_zero */ {
				return errFoldMissed
			}
			return st.fail(err)
		}
	}
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "22012" /* division_by_zero */ {
			return s.checkpointMoved(p)
		}
		return fmt.Errorf("storing position %d (%s) in %s: %w", p.Seq, p.EndLSN, s.cfg.CheckpointTable, err)
	}
	tag, err := br.Exec()
	if err != nil {
		_ = br.Close()
		return fmt.Errorf("committing position %d (%s): %w", p.Seq, p.EndLSN, err)
	}
	if tag.String() != "COMMIT" {
		_ = br.Close()
		return errors.New("commit: the transaction was rolled back")
	}
	s.stored = checkpointRow{exists: true, pos: p}
	var insert, flush change.LSN
	if s.async {
		var il, fl string
		if err := br.QueryRow().Scan(&il, &fl); err != nil {
			_ = br.Close()
			return fmt.Errorf("commit: reading the WAL positions: %w", err)
		}
		if insert, flush, err = parseWALPositions(il, fl); err != nil {
			_ = br.Close()
			return err
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	s.folded++
	s.committed(p, insert, flush)
	return nil
}
