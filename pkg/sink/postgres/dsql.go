package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	dsqlauth "github.com/aws/aws-sdk-go-v2/feature/dsql/auth"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// Aurora DSQL (FlavorDSQL) rejects a transaction that modifies more than
// 3,000 rows or 10 MiB or runs longer than 5 minutes, and a connection
// lives at most 60 minutes. The sink therefore never keeps a target
// transaction open between Apply calls, and splits the changes of a batch
// into target transactions ("chunks") under DSQLConfig's budgets, each
// committing its checkpoint row with it:
//
//	name, seq, end_lsn   the position of the last complete batch, as in
//	                     the plain flavor: apply resumes after it
//	applied_lsn          FinalLSN (commit LSN) of the last source
//	                     transaction wholly applied, possibly beyond seq
//	tx_lsn, tx_changes   FinalLSN of a source transaction applied in part,
//	                     and how many of its changes (from its BEGIN) are
//	                     applied; '0/0' and 0 when none
//	tx_chunk             how many chunks of that transaction committed
//
// Crash safety, step by step:
//  1. A chunk's rows and its checkpoint row commit in one target
//     transaction: after a crash the target has both or neither.
//  2. Apply resumes at seq+1, so it reads again the source transactions of
//     the batch that was in flight. Position also loads the marks.
//  3. A re-read transaction with FinalLSN <= applied_lsn is skipped whole;
//     in the one with FinalLSN = tx_lsn the first tx_changes changes are
//     skipped. Changes are counted from the transaction's BEGIN, so the
//     skip is exact however the trail is cut into batches the second time.
//     FinalLSNs grow in trail (commit) order.
//  4. seq lags the marks: it moves at the end of an Apply only, and not
//     past a transaction that spans Partial batches, so tx_lsn may name a
//     transaction several batches after seq. Until the re-read passes what
//     the mark covers, every chunk commits the same mark (nextMark), the
//     empty ones that end a wholly skipped batch included.
//  5. Each chunk's checkpoint upsert first checks that the row is still as
//     this sink read or wrote it (storeDSQLPosition): a killed process's
//     COMMIT may land after the next process read the row, which must
//     then not commit the same rows again but resume from the new marks.
//  6. Changes without a source transaction (snapshot rows) are upserts and
//     carry no mark: applying them again is harmless.
//
// A source transaction larger than one chunk is therefore not atomic on
// DSQL: readers may see its first chunks before its last commits.
//
// Statements: DSQL has no TRUNCATE, temporary tables, MERGE, SAVEPOINT or
// session_replication_role (nor triggers or foreign keys, which that
// setting exists to silence). The flavor uses unnest statements only (no
// COPY staging), upserts with INSERT … ON CONFLICT DO UPDATE (each row
// modified once), and turns a source TRUNCATE into DELETEs of at most
// MaxTxRows rows per transaction. A serialization failure (SQLSTATE 40001,
// DSQL's OC000/OC001 optimistic-concurrency conflicts) rolls the chunk back
// and runs it again after a backoff, up to MaxRetries times.

// DSQLConfig tunes the aurora-dsql flavor. The zero value of every field
// means the default stated on it.
type DSQLConfig struct {
	// Region signs the IAM tokens. Default: the region in the DSN's host
	// (<cluster>.dsql.<region>.on.aws); required when the host has none.
	Region string
	// TokenExpiry is the lifetime of each IAM token (a token only opens a
	// connection). Default 15m.
	TokenExpiry time.Duration
	// MaxTxRows bounds the rows one target transaction modifies, its
	// checkpoint row included (DSQL's limit: 3,000). Default 2500.
	MaxTxRows int
	// MaxTxBytes bounds the approximate bytes of values one target
	// transaction writes (DSQL's limit: 10 MiB). Default 8 MiB.
	MaxTxBytes int
	// MaxTxDuration bounds one target transaction (DSQL's limit: 5
	// minutes); one that runs longer is cancelled and retried. Default 4m.
	MaxTxDuration time.Duration
	// ConnMaxAge is when the connection is replaced by a new one, between
	// transactions (DSQL closes connections after 60 minutes). Default 50m.
	ConnMaxAge time.Duration
	// MaxRetries is how often a transaction failing with SQLSTATE 40001 is
	// run again before Apply returns a retriable error. Default 10.
	MaxRetries int
	// MinBackoff and MaxBackoff bound the jittered exponential backoff
	// between those runs. Defaults 20ms and 2s.
	MinBackoff, MaxBackoff time.Duration
}

func (c DSQLConfig) defaults() DSQLConfig {
	if c.TokenExpiry <= 0 {
		c.TokenExpiry = 15 * time.Minute
	}
	if c.MaxTxRows <= 0 {
		c.MaxTxRows = 2500
	}
	if c.MaxTxBytes <= 0 {
		c.MaxTxBytes = 8 << 20
	}
	if c.MaxTxDuration <= 0 {
		c.MaxTxDuration = 4 * time.Minute
	}
	if c.ConnMaxAge <= 0 {
		c.ConnMaxAge = 50 * time.Minute
	}
	if c.MaxRetries <= 0 {
		c.MaxRetries = 10
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 20 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 2 * time.Second
	}
	return c
}

// dsqlState is the DSQL flavor's progress through the source transactions.
type dsqlState struct {
	base    sink.Position // seq/end_lsn of the checkpoint row
	applied change.LSN    // applied_lsn
	part    txMark        // tx_lsn, tx_changes, tx_chunk as committed
	cur     txMark        // the source transaction being applied now
	stale   bool          // an Apply failed: reload the marks first

	// pending is the next chunk: changes not yet written.
	pending      []*change.Change
	pendRows     int
	pendBytes    int
	pendApplied  change.LSN // FinalLSN of the last source transaction the chunk completes
	retries      int        // 40001 retries so far (tests, logs)
	chunksCommit int        // target transactions committed (tests)
}

// nextMark is the partial-transaction mark the next chunk commits with,
// applied being the applied_lsn it commits.
//
// A resumed apply reads again the source transactions from seq on, and
// seq lags the mark: it moves only at the end of an Apply, and not past
// a transaction that spans Partial batches. So the mark a crash left may
// name a transaction several batches ahead, and the transactions before
// it, wholly applied, are skipped (step 3). Until the re-read reaches and
// passes what that mark covers, every chunk — the empty one that ends a
// skipped batch included — must commit the same mark; replacing it with
// the position in a skipped transaction would forget the mark, and the
// marked transaction's applied chunks would be applied again.
func (d *dsqlState) nextMark(applied change.LSN) txMark {
	cur, part := d.cur, d.part
	if part.final > applied && (part.final > cur.final || part.final == cur.final && part.changes >= cur.changes) {
		return part // not past what the committed mark covers
	}
	if cur.final == 0 || cur.final <= applied {
		return txMark{} // no transaction in part: between them, or in a skipped one
	}
	cur.chunk++
	return cur
}

// txMark is progress in one source transaction.
type txMark struct {
	final   change.LSN // FinalLSN; 0 for none
	changes int        // changes of it applied (or skipped), from its BEGIN
	chunk   int        // chunks of it committed
}

// dsqlToken signs a DSQL IAM token for a new connection with credentials
// from the default AWS chain; the admin role takes the admin action.
func (s *Sink) dsqlToken(ctx context.Context, c *pgx.ConnConfig) (string, error) {
	if s.cfg.tokenFunc != nil {
		return s.cfg.tokenFunc(ctx, c)
	}
	region := s.cfg.DSQL.Region
	if region == "" {
		region = dsqlRegion(c.Host)
	}
	if region == "" {
		return "", fmt.Errorf("no region: %s is not a DSQL endpoint (<cluster>.dsql.<region>.on.aws); set the sink's dsql.region", c.Host)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
	if err != nil {
		return "", err
	}
	expiry := func(o *dsqlauth.TokenOptions) { o.ExpiresIn = s.cfg.DSQL.TokenExpiry }
	if c.User == "admin" {
		return dsqlauth.GenerateDBConnectAdminAuthToken(ctx, c.Host, region, awsCfg.Credentials, expiry)
	}
	return dsqlauth.GenerateDbConnectAuthToken(ctx, c.Host, region, awsCfg.Credentials, expiry)
}

// applyDSQL is Apply for FlavorDSQL: see the comment at the top of the file.
func (s *Sink) applyDSQL(ctx context.Context, b *sink.Batch) error {
	d := s.dsql
	if d.stale {
		if _, err := s.loadMarks(ctx); err != nil {
			return err
		}
	}
	d.stale = true // until this Apply succeeds
	for i, tx := range b.Txs {
		var final change.LSN
		if tx.Tx != nil {
			final = tx.Tx.FinalLSN
		}
		// Changes without a source transaction (a non-transactional
		// message, snapshot rows) carry no mark and leave cur alone.
		if final != 0 && final != d.cur.final {
			d.cur = txMark{final: final}
			if final == d.part.final {
				d.cur.chunk = d.part.chunk
			}
		}
		complete := !(b.Partial && i == len(b.Txs)-1)
		if final != 0 && final <= d.applied {
			// Wholly applied before a crash (step 3).
			d.cur.changes += len(tx.Changes)
			continue
		}
		for _, c := range tx.Changes {
			if final != 0 && final == d.part.final && d.cur.changes < d.part.changes {
				d.cur.changes++ // applied by a committed chunk (step 3)
				continue
			}
			if err := s.addDSQL(ctx, c); err != nil {
				return err
			}
			d.cur.changes++
		}
		if complete && final != 0 {
			d.pendApplied = final
			d.cur = txMark{}
		}
	}
	if !b.Partial || b.Position.Seq > d.base.Seq {
		// A Partial batch's Position is that of the last transaction the
		// batcher completed in this session: zero when a large transaction
		// resumes first thing after a restart. Never move back to it.
		d.base = b.Position
	}
	if err := s.flushDSQL(ctx); err != nil {
		return err
	}
	d.stale = false
	return nil
}

// addDSQL adds c to the pending chunk, first committing the chunk when c
// would take it over a budget. A TRUNCATE runs on its own.
func (s *Sink) addDSQL(ctx context.Context, c *change.Change) error {
	d := s.dsql
	var rows int
	switch c.Op {
	case change.OpMessage:
		return nil
	case change.OpTruncate:
		if err := s.flushDSQL(ctx); err != nil {
			return err
		}
		return s.truncateDSQL(ctx, c.Truncate)
	case change.OpInsert, change.OpDelete:
		rows = 1
	case change.OpUpdate:
		rows = 1
		if c.Old != nil {
			rows = 2 // maybe a key change: a delete and an insert
		}
	}
	bytes := changeValueBytes(c)
	// +1: the checkpoint row.
	if len(d.pending) > 0 && (d.pendRows+rows+1 > s.cfg.DSQL.MaxTxRows || d.pendBytes+bytes > s.cfg.DSQL.MaxTxBytes) {
		if err := s.flushDSQL(ctx); err != nil {
			return err
		}
	}
	d.pending = append(d.pending, c)
	d.pendRows += rows
	d.pendBytes += bytes
	return nil
}

// flushDSQL commits the pending chunk with the checkpoint row in one target
// transaction.
func (s *Sink) flushDSQL(ctx context.Context) error {
	d := s.dsql
	steps, err := buildPlan([]sink.Tx{{Changes: d.pending}})
	if err != nil {
		return err
	}
	applied := max(d.applied, d.pendApplied)
	mark := d.nextMark(applied)
	err = s.dsqlTx(ctx, "apply", func(ctx context.Context) error {
		for _, st := range steps {
			if err := s.step(ctx, st); err != nil {
				return err
			}
		}
		return s.storeDSQLPosition(ctx, d.base, applied, mark)
	})
	if err != nil {
		return err
	}
	s.stored = checkpointRow{exists: true, pos: d.base, applied: applied, part: mark}
	d.applied, d.part = applied, mark
	d.cur.chunk = mark.chunk
	d.pending, d.pendRows, d.pendBytes, d.pendApplied = nil, 0, 0, 0
	return nil
}

// truncateDSQL empties the tables of a source TRUNCATE with DELETEs of at
// most MaxTxRows-1 rows per target transaction (DSQL has no TRUNCATE).
// Each carries the checkpoint with the TRUNCATE not yet counted as
// applied, so after a crash it runs again, deleting what is left; nothing
// after it has been applied then. CASCADE and RESTART IDENTITY have no
// counterpart on DSQL (no foreign keys, no sequences) and are ignored.
func (s *Sink) truncateDSQL(ctx context.Context, tr *change.Truncate) error {
	if tr == nil {
		return nil
	}
	d := s.dsql
	for _, rel := range tr.Relations {
		t, err := s.table(ctx, s.conn, rel)
		if err != nil {
			return err
		}
		if len(t.keys) == 0 {
			return fmt.Errorf("truncate %s: the aurora-dsql flavor empties tables by key and %s has none", t.target, rel.QualifiedName())
		}
		sql := deleteSomeSQL(t, s.cfg.DSQL.MaxTxRows-1)
		for {
			var n int64
			mark := d.cur
			if mark.final != 0 {
				mark.chunk++
			}
			err := s.dsqlTx(ctx, "truncate", func(ctx context.Context) error {
				s.statements++
				tag, err := s.tx.Exec(ctx, sql)
				if err != nil {
					return fmt.Errorf("truncate %s (as DELETE): %w", t.target, err)
				}
				n = tag.RowsAffected()
				return s.storeDSQLPosition(ctx, d.base, d.applied, mark)
			})
			if err != nil {
				return err
			}
			s.stored = checkpointRow{exists: true, pos: d.base, applied: d.applied, part: mark}
			d.part = mark
			d.cur.chunk = mark.chunk
			if n == 0 {
				break
			}
		}
	}
	return nil
}

// dsqlTx runs fn in a target transaction of at most MaxTxDuration and
// commits it, running it again after a backoff when it fails with a
// serialization failure (40001), up to MaxRetries times. It first replaces
// a connection older than ConnMaxAge.
func (s *Sink) dsqlTx(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	cfg := s.cfg.DSQL
	backoff := cfg.MinBackoff
	for attempt := 0; ; attempt++ {
		if err := s.recycle(ctx); err != nil {
			return err
		}
		err := s.dsqlTxOnce(ctx, fn)
		if err == nil {
			s.dsql.chunksCommit++
			return nil
		}
		if !isConflict(err) || s.conn.IsClosed() || attempt >= cfg.MaxRetries {
			if isConflict(err) {
				return sink.Retriable(fmt.Errorf("%s: still conflicting after %d retries: %w", what, attempt, err))
			}
			return err
		}
		s.dsql.retries++
		s.log.Debug("DSQL transaction conflicted; retrying", "what", what, "attempt", attempt+1, "backoff", backoff, "error", err)
		// Full jitter: concurrent writers that conflicted do not retry in step.
		wait := time.Duration(rand.Int64N(int64(backoff)) + 1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(backoff*2, cfg.MaxBackoff)
	}
}

func (s *Sink) dsqlTxOnce(ctx context.Context, fn func(ctx context.Context) error) error {
	tctx, cancel := context.WithTimeout(ctx, s.cfg.DSQL.MaxTxDuration)
	defer cancel()
	var err error
	if s.tx, err = s.conn.Begin(tctx); err != nil {
		s.tx = nil
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tctx); err != nil {
		s.rollback(ctx)
		return err
	}
	err = s.tx.Commit(tctx)
	s.tx = nil
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// isConflict reports a serialization failure: on DSQL an optimistic
// concurrency conflict (OC000 data, OC001 schema).
func isConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40001"
}

// recycle replaces a connection older than ConnMaxAge with a new one (a
// fresh token), between transactions.
func (s *Sink) recycle(ctx context.Context) error {
	if s.tx != nil || s.now().Sub(s.connectedAt) < s.cfg.DSQL.ConnMaxAge {
		return nil
	}
	s.log.Info("replacing the DSQL connection before its time limit", "age", s.now().Sub(s.connectedAt).Round(time.Second))
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	if err := s.prepareSession(ctx, conn); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return err
	}
	old := s.conn
	s.conn = conn
	if err := old.Close(ctx); err != nil {
		s.log.Debug("closing the replaced connection", "error", err)
	}
	return nil
}

// storeDSQLPosition upserts the checkpoint row with the chunk marks,
// provided the row is still as s.stored says (see storePosition); once the
// transaction commits, the caller sets stored to what it wrote.
func (s *Sink) storeDSQLPosition(ctx context.Context, p sink.Position, applied change.LSN, m txMark) error {
	if p.Seq > math.MaxInt64 {
		return fmt.Errorf("position seq %d does not fit the checkpoint table's bigint", p.Seq)
	}
	old := s.stored
	tag, err := s.tx.Exec(ctx, "INSERT INTO "+s.checkpoint+` AS c (name, seq, end_lsn, applied_lsn, tx_lsn, tx_changes, tx_chunk, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now())
ON CONFLICT (name) DO UPDATE SET seq = EXCLUDED.seq, end_lsn = EXCLUDED.end_lsn, applied_lsn = EXCLUDED.applied_lsn,
	tx_lsn = EXCLUDED.tx_lsn, tx_changes = EXCLUDED.tx_changes, tx_chunk = EXCLUDED.tx_chunk, updated_at = EXCLUDED.updated_at
WHERE $8::boolean AND c.seq = $9 AND c.end_lsn = $10 AND c.applied_lsn = $11 AND c.tx_lsn = $12 AND c.tx_changes = $13 AND c.tx_chunk = $14`,
		s.cfg.Name, int64(p.Seq), p.EndLSN.String(), applied.String(), m.final.String(), int64(m.changes), int64(m.chunk),
		old.exists, int64(old.pos.Seq), old.pos.EndLSN.String(), old.applied.String(), old.part.final.String(), int64(old.part.changes), int64(old.part.chunk))
	if err != nil {
		return fmt.Errorf("storing position %d (%s) in %s: %w", p.Seq, p.EndLSN, s.cfg.CheckpointTable, err)
	}
	if tag.RowsAffected() == 0 {
		return s.checkpointMoved(p)
	}
	return nil
}

// loadMarks reads the checkpoint row: the position and the chunk marks.
func (s *Sink) loadMarks(ctx context.Context) (sink.Position, error) {
	var (
		seq, changes, chunk    int64
		end, applied, partial  string
		p                      sink.Position
		appliedLSN, partialLSN change.LSN
	)
	err := s.conn.QueryRow(ctx, "SELECT seq, end_lsn, applied_lsn, tx_lsn, tx_changes, tx_chunk FROM "+s.checkpoint+" WHERE name = $1",
		s.cfg.Name).Scan(&seq, &end, &applied, &partial, &changes, &chunk)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		*s.dsql = dsqlState{}
		s.stored = checkpointRow{}
		return p, nil
	case err != nil:
		return p, fmt.Errorf("reading position from %s: %w", s.cfg.CheckpointTable, err)
	}
	for _, v := range []struct {
		text string
		dst  *change.LSN
	}{{end, &p.EndLSN}, {applied, &appliedLSN}, {partial, &partialLSN}} {
		if *v.dst, err = change.ParseLSN(v.text); err != nil {
			return p, fmt.Errorf("reading position from %s: %w", s.cfg.CheckpointTable, err)
		}
	}
	p.Seq = uint64(seq)
	*s.dsql = dsqlState{base: p, applied: appliedLSN, part: txMark{final: partialLSN, changes: int(changes), chunk: int(chunk)}}
	s.stored = checkpointRow{exists: true, pos: p, applied: appliedLSN, part: s.dsql.part}
	return p, nil
}

// changeValueBytes is the approximate size a change writes.
func changeValueBytes(c *change.Change) int {
	n := 16
	for _, v := range c.New {
		n += len(v.Data) + 1
	}
	for _, v := range c.Old {
		n += len(v.Data) + 1
	}
	return n
}

// deleteSomeSQL deletes at most n rows of t, found by key.
func deleteSomeSQL(t *table, n int) string {
	keys := make([]string, len(t.keys))
	for i, k := range t.keys {
		keys[i] = t.cols[k].name
	}
	list := strings.Join(keys, ", ")
	return "DELETE FROM " + t.target.sql() + " WHERE (" + list + ") IN (SELECT " + list + " FROM " + t.target.sql() + " LIMIT " + strconv.Itoa(n) + ")"
}
