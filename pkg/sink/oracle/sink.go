package oracle

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/godror/godror"
	godrordsn "github.com/godror/godror/dsn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/dsn"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// Sink applies batches to an Oracle database through database/sql (godror
// registers driver "godror"). It holds one session and is used from one
// goroutine, like sink.Sink says.
//
// After Apply returns an error the open transaction is rolled back; if the
// error is retriable the caller recreates the Sink (Close, then New) before
// retrying from Position.
type Sink struct {
	cfg  Config
	log  *slog.Logger
	desc string // the target without its password: user@connectString
	db   *sql.DB
	conn *sql.Conn
	tx   *sql.Tx // the open target transaction, nil when none

	schema     string // the Oracle schema, unquoted; "" for the current schema
	checkpoint string // quoted, qualified checkpoint table
	tables     map[*change.Relation]*table
	types      *pgtype.Map

	// statements counts round trips that carry data or the position
	// (array executions, the checkpoint MERGE, COMMIT), for tests and the
	// statements-per-batch figure.
	statements int
}

var (
	_ sink.Sink          = (*Sink)(nil)
	_ sink.PositionStore = (*Sink)(nil)
	_ sink.SchemaCreator = (*Sink)(nil)
)

// New connects to Oracle with godror and prepares the session and the
// checkpoint table. A missing Instant Client is ErrNoClient (terminal);
// connection failures are retriable, bad credentials not. Errors name the
// target without its password.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	db, desc, secret, err := openDB(cfg)
	if err != nil {
		return nil, err
	}
	s, err := open(ctx, cfg, db, desc, log)
	if err != nil {
		db.Close()
		if missingClient(err) {
			return nil, fmt.Errorf("oracle sink %q: %w", cfg.Name, ErrNoClient)
		}
		return nil, dsn.RedactError(err, secret)
	}
	return s, nil
}

// openDB prepares a godror database handle for cfg (nothing is connected
// yet) and returns it with the target's description and the password to
// hide from errors.
func openDB(cfg Config) (db *sql.DB, desc, secret string, err error) {
	params, err := godrordsn.Parse(cfg.DSN)
	if err != nil {
		return nil, "", "", fmt.Errorf("oracle sink %q: parsing dsn: %w", cfg.Name, dsn.RedactError(err, cfg.Password, secretOf(cfg.DSN)))
	}
	if cfg.Password != "" {
		params.Password = godrordsn.NewPassword(cfg.Password)
	}
	if cfg.LibDir != "" {
		params.LibDir = cfg.LibDir
	}
	params.Timezone = time.UTC
	desc = params.Username + "@" + params.ConnectString
	return sql.OpenDB(godror.NewConnector(params)), desc, params.Password.Secret(), nil
}

// ReadPosition reads a sink's stored position without preparing anything
// (for `cdcd status` while cdcd is down): it needs SELECT on the checkpoint
// table only. A missing table or row is the zero position.
func ReadPosition(ctx context.Context, cfg Config) (sink.Position, error) {
	if err := cfg.Validate(); err != nil {
		return sink.Position{}, err
	}
	db, desc, secret, err := openDB(cfg)
	if err != nil {
		return sink.Position{}, err
	}
	defer db.Close()
	cfg = cfg.withDefaults()
	s := &Sink{cfg: cfg, desc: desc}
	if cfg.Schema != "" {
		if s.schema, err = cfg.Case.ident(cfg.Schema); err != nil {
			return sink.Position{}, s.errorf("schema: %w", err)
		}
	}
	ck, err := cfg.Case.ident(cfg.CheckpointTable)
	if err != nil {
		return sink.Position{}, s.errorf("checkpoint table: %w", err)
	}
	s.checkpoint = s.qualify(ck)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s.conn, err = db.Conn(ctx); err != nil {
		if missingClient(err) {
			return sink.Position{}, fmt.Errorf("oracle sink %q: %w", cfg.Name, ErrNoClient)
		}
		return sink.Position{}, classify(dsn.RedactError(s.errorf("connecting: %w", err), secret))
	}
	defer s.conn.Close()
	p, err := s.Position(ctx)
	if err != nil && oraCode(err) == 942 {
		return sink.Position{}, nil // no checkpoint table: nothing applied yet
	}
	return p, dsn.RedactError(err, secret)
}

// secretOf returns the password of a logfmt or URL godror DSN, to hide it
// should a parse error echo it.
func secretOf(d string) string {
	p, err := godrordsn.Parse(d)
	if err != nil {
		return ""
	}
	return p.Password.Secret()
}

// NewDB is New over an already opened database (any database/sql driver
// that speaks Oracle SQL; tests use a recording driver). The Sink closes db.
func NewDB(ctx context.Context, cfg Config, db *sql.DB, log *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return open(ctx, cfg, db, "database/sql", log)
}

func open(ctx context.Context, cfg Config, db *sql.DB, desc string, log *slog.Logger) (*Sink, error) {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sink{
		cfg:    cfg,
		log:    log.With("sink", cfg.Name),
		desc:   desc,
		db:     db,
		tables: map[*change.Relation]*table{},
		types:  pgtype.NewMap(),
	}
	var err error
	if cfg.Schema != "" {
		if s.schema, err = cfg.Case.ident(cfg.Schema); err != nil {
			return nil, s.errorf("schema: %w", err)
		}
	}
	ck, err := cfg.Case.ident(cfg.CheckpointTable)
	if err != nil {
		return nil, s.errorf("checkpoint table: %w", err)
	}
	s.checkpoint = s.qualify(ck)
	if s.conn, err = db.Conn(ctx); err != nil {
		return nil, classify(s.errorf("connecting: %w", err))
	}
	if err := s.setup(ctx, ck); err != nil {
		s.conn.Close()
		return nil, classify(s.errorf("%w", err))
	}
	s.log.Info("oracle sink connected", "target", s.desc, "checkpoint_table", s.checkpoint)
	return s, nil
}

// setup pins the session's time zone (TIMESTAMP values are bound as UTC)
// and creates the checkpoint table when missing (DDL commits on its own:
// this runs before any batch).
func (s *Sink) setup(ctx context.Context, ck string) error {
	if _, err := s.conn.ExecContext(ctx, sessionSQL); err != nil {
		return fmt.Errorf("setting the session time zone: %w", err)
	}
	var n int
	if err := s.conn.QueryRowContext(ctx, tableExistsSQL, s.schema, ck).Scan(&n); err != nil {
		return fmt.Errorf("looking for checkpoint table %s: %w", s.checkpoint, err)
	}
	if n > 0 {
		return nil
	}
	if _, err := s.conn.ExecContext(ctx, checkpointDDL(s.checkpoint)); err != nil {
		return fmt.Errorf("creating checkpoint table %s (needs CREATE TABLE and quota on the tablespace, or create it as the DBA: see pkg/sink/oracle/doc.go): %w", s.checkpoint, err)
	}
	return nil
}

const sessionSQL = `ALTER SESSION SET TIME_ZONE = '+00:00'`

// tableExistsSQL counts a table in the given schema ("" or NULL: the
// current one). Oracle binds ” as NULL, hence NVL.
const tableExistsSQL = `SELECT COUNT(*) FROM ALL_TABLES WHERE OWNER = NVL(:1, SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA')) AND TABLE_NAME = :2`

// qualify returns the quoted name of table t in the sink's schema.
func (s *Sink) qualify(t string) string {
	if s.schema == "" {
		return quote(t)
	}
	return quote(s.schema) + "." + quote(t)
}

// Apply writes b in the open target transaction, beginning one if none is
// open. Unless b is Partial it then stores b.Position in the checkpoint
// table and commits, so data and position become durable together; a
// Partial batch leaves the transaction open for the next Apply. On error
// everything not yet committed is rolled back.
func (s *Sink) Apply(ctx context.Context, b *sink.Batch) (err error) {
	if s.conn == nil {
		return sink.Retriable(s.errorf("the connection is closed: recreate the sink"))
	}
	defer func() {
		if err != nil {
			s.rollback(ctx)
			err = classify(s.errorf("%w", err))
		}
	}()
	steps, err := buildPlan(b.Txs)
	if err != nil {
		return err
	}
	if s.tx == nil {
		// Crash safety, step 1: everything below runs in one explicit
		// transaction (outside one, godror commits each execution).
		if s.tx, err = s.conn.BeginTx(ctx, nil); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
	}
	for _, st := range steps {
		if err := s.step(ctx, st, b.Snapshot); err != nil {
			return err
		}
	}
	if b.Partial {
		return nil
	}
	// Step 2: the position goes into the same transaction as the rows.
	if err := s.storePosition(ctx, b.Position); err != nil {
		return err
	}
	// Step 3: one COMMIT makes both durable; a crash before it loses both,
	// and apply resumes from the previous position, which the target still
	// has. An error from COMMIT leaves the outcome unknown: the retry reads
	// Position, which tells.
	s.statements++
	err = s.tx.Commit()
	s.tx = nil
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// rollback ends the open transaction after an error.
func (s *Sink) rollback(ctx context.Context) {
	if s.tx == nil {
		return
	}
	if err := s.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		s.log.Warn("oracle sink rollback failed", "error", err)
	}
	s.tx = nil
}

// storePosition merges the sink's checkpoint row in the open transaction.
func (s *Sink) storePosition(ctx context.Context, p sink.Position) error {
	if p.Seq > math.MaxInt64 {
		return fmt.Errorf("position seq %d does not fit the checkpoint table", p.Seq)
	}
	s.statements++
	if _, err := s.tx.ExecContext(ctx, checkpointMergeSQL(s.checkpoint), s.cfg.Name, int64(p.Seq), p.EndLSN.String()); err != nil {
		return fmt.Errorf("storing position %d (%s) in %s: %w", p.Seq, p.EndLSN, s.checkpoint, err)
	}
	return nil
}

// Position returns the position of the last committed batch, the zero
// Position when the sink has not committed one yet.
func (s *Sink) Position(ctx context.Context) (sink.Position, error) {
	var p sink.Position
	if s.conn == nil {
		return p, sink.Retriable(s.errorf("the connection is closed: recreate the sink"))
	}
	var (
		seq int64
		lsn string
	)
	err := s.conn.QueryRowContext(ctx, checkpointSelectSQL(s.checkpoint), s.cfg.Name).Scan(&seq, &lsn)
	if errors.Is(err, sql.ErrNoRows) {
		return p, nil
	}
	if err != nil {
		return p, classify(s.errorf("reading position from %s: %w", s.checkpoint, err))
	}
	if p.EndLSN, err = change.ParseLSN(lsn); err != nil {
		return p, s.errorf("reading position from %s: %w", s.checkpoint, err)
	}
	p.Seq = uint64(seq)
	return p, nil
}

// Close rolls back an open Partial transaction and closes the session.
func (s *Sink) Close(ctx context.Context) error {
	if s.conn == nil {
		return nil
	}
	s.rollback(ctx)
	err := s.conn.Close()
	s.conn = nil
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return s.errorf("closing: %w", err)
	}
	return nil
}

// Statements returns the number of data round trips so far: array
// executions, checkpoint writes and commits.
func (s *Sink) Statements() int { return s.statements }

// errorf formats an error prefixed with the sink and its target.
func (s *Sink) errorf(format string, args ...any) error {
	return fmt.Errorf("oracle sink %q (%s): "+format, append([]any{s.cfg.Name, s.desc}, args...)...)
}
