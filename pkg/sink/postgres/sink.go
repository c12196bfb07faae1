package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/dsn"
	"github.com/cdcd-io/cdcd/pkg/schema"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// DefaultCheckpointTable is the table the sink keeps its positions in when
// Config.CheckpointTable is empty.
const DefaultCheckpointTable = "cdcd.checkpoint"

// Config configures a Sink. The zero value of every optional field means the
// default stated on it.
type Config struct {
	// Name is the sink's name: the key of its row in the checkpoint table,
	// and the name in its errors. Required.
	Name string
	// DSN is the target's connection string, a URL or key=value pairs as
	// libpq takes them (sslmode=verify-full&sslrootcert=/path/ca.pem and the
	// PG* environment variables included). Required.
	DSN string
	// CheckpointTable is the table holding one position row per sink name,
	// "schema.table" or "table" (then found through the search_path). It and
	// its schema are created when missing. Default DefaultCheckpointTable.
	CheckpointTable string
	// IAM enables Aurora/RDS IAM authentication. Default off.
	IAM IAMConfig
	// StatementTimeout bounds every statement on the target
	// (statement_timeout). Default 0: no limit.
	StatementTimeout time.Duration
	// CreateSchema creates a missing target table from the first change
	// that needs it, and adds columns added on the source (evolve.go).
	// Default false: a missing table or column stops the sink.
	CreateSchema bool
	// SourceTable, when set, reads a source table's definition by OID
	// (schema.Read over a source connection): tables and columns the sink
	// creates then get the source's constant defaults, NOT NULL and
	// primary key. Default nil: they are made from the replication
	// stream's Relation message alone.
	SourceTable func(ctx context.Context, oid uint32) (*schema.Table, error)
	// Flavor is the kind of target (flavor.go). Default FlavorPostgres.
	Flavor Flavor
	// DSQL tunes FlavorDSQL (dsql.go).
	DSQL DSQLConfig
	// Citus tunes FlavorCitus (citus.go).
	Citus CitusConfig
	// SyncCommit commits every batch synchronously (the target's own
	// synchronous_commit). Default false: on FlavorPostgres, batches commit
	// with synchronous_commit = off, like a logical replication
	// subscriber's apply worker, and a position counts as durable (Durable:
	// reported applied, trail purge, source acknowledgement) only once the
	// target's WAL is flushed past its commit (commit.go).
	SyncCommit bool

	now       func() time.Time                                       // tests: the clock; default time.Now
	tokenFunc func(context.Context, *pgx.ConnConfig) (string, error) // tests: DSQL token source
}

// IAMConfig configures Aurora/RDS IAM database authentication.
type IAMConfig struct {
	// Region is the database's AWS region. When set, each new connection
	// authenticates with a fresh IAM token for the DSN's host, port and user
	// (valid 15 minutes, so a reconnect never reuses an expired one), signed
	// with credentials from the default AWS chain (environment, shared
	// config, web identity, container or instance role). The DSN should then
	// ask for TLS (sslmode=verify-full); cdcd check fails without it.
	// Default "": password authentication as the DSN says.
	Region string
}

// Sink applies batches to a PostgreSQL or Aurora PostgreSQL database. It uses
// one connection and is used from one goroutine, like sink.Sink says.
//
// After Apply returns an error the open transaction is rolled back; if the
// error is retriable the connection may be gone, and the caller recreates the
// Sink (Close, then New) before retrying from Position. Apply on a Sink whose
// connection is closed returns a retriable error.
type Sink struct {
	cfg  Config
	log  *slog.Logger
	desc string // the target without its password: host:port/db user=…
	conn *pgx.Conn
	tx   pgx.Tx // the open target transaction, nil when none
	// begin: a batch's transaction is due but not yet begun; the first
	// statements sent begin it in their round trip (begin.go).
	begin bool
	// foldOff counts down the batches that are not applied in one round
	// trip after one that tried missed keys (fold.go).
	foldOff int

	checkpoint string                      // quoted checkpoint table
	tables     map[*change.Relation]*table // target tables by source relation
	// lastRel is the last relation looked up per source table OID, to tell
	// which columns a schema change dropped or retyped (evolve.go).
	lastRel map[uint32]*change.Relation
	// ddl: the open transaction changed the target's schema; a rollback
	// must forget the tables looked up since.
	ddl    bool
	staged map[int]bool // staging tables created, by column count
	// queued are the data statements of the segment being run, sent
	// together by runQueued (exec.go).
	queued []statement

	// copyMinRows is the row count from which a set of rows to insert or
	// upsert goes through COPY (into the table, or a staging table) instead
	// of unnest arrays; 0 never.
	copyMinRows int
	// chunksReady: the snapshot chunks table exists (bulk.go).
	chunksReady bool
	// statements counts data statements (DML, COPY, TRUNCATE), and
	// pipelines the pipelines of more than one statement, and begins the
	// BEGINs sent in a round trip of their own (begin.go), and folded the
	// commits sent with their batch's statements (fold.go), for tests.
	statements, pipelines, begins, folded int

	// async: batches commit asynchronously (commit.go); waits are the
	// committed positions not yet known durable, oldest first; durable is
	// the last position known durable.
	async   bool
	waits   []commitWait
	durable sink.Position

	pcfg        *pgx.ConnConfig // the parsed DSN, without any IAM token
	connectedAt time.Time       // when conn was opened
	dsql        *dsqlState      // FlavorDSQL's chunk progress; nil otherwise
	// stored is the checkpoint row as this sink last read or committed it;
	// every write of the row first checks that it still is (see
	// positionSQL).
	stored checkpointRow
}

// checkpointRow is the content of the sink's checkpoint row. Position and
// the chunk marks only move forward, so a row that differs from the one a
// sink read or wrote last was written by someone else since.
type checkpointRow struct {
	exists  bool
	pos     sink.Position
	applied change.LSN // aurora-dsql: applied_lsn
	part    txMark     // aurora-dsql: tx_lsn, tx_changes, tx_chunk
}

// errCheckpointMoved is returned, retriable, when the checkpoint row is no
// longer what the sink read or wrote last. A process killed right after it
// sent COMMIT leaves that commit running on the target, and the server
// completes it even though no one is left to hear the result: when the
// next process read the row before that commit landed, it resumed behind
// what the target now holds, and would apply those rows a second time.
// Its transaction is rolled back instead, and the worker resumes from the
// stored position, which now includes the late commit.
var errCheckpointMoved = errors.New("the checkpoint row changed since this session read it (a transaction of an earlier process committed late): resuming from the stored position")

var (
	_ sink.Sink           = (*Sink)(nil)
	_ sink.PositionStore  = (*Sink)(nil)
	_ sink.AsyncCommitter = (*Sink)(nil)
)

// New connects to the target, makes the session a replica session
// (session_replication_role = replica: triggers and foreign keys do not fire
// for applied rows, as on a logical replication subscriber), and creates the
// checkpoint table if missing. Its errors name the target without its
// password; connection failures are retriable, authentication failures not.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Sink, error) {
	if cfg.Name == "" {
		return nil, errors.New("postgres sink: a name is required")
	}
	if cfg.DSN == "" {
		return nil, fmt.Errorf("postgres sink %q: a DSN is required", cfg.Name)
	}
	if cfg.CheckpointTable == "" {
		cfg.CheckpointTable = DefaultCheckpointTable
	}
	var err error
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Flavor, err = ParseFlavor(string(cfg.Flavor)); err != nil {
		return nil, fmt.Errorf("postgres sink %q: %w", cfg.Name, err)
	}
	cfg.DSQL = cfg.DSQL.defaults()
	ckSchema, ckTable, err := splitTable(cfg.CheckpointTable)
	if err != nil {
		return nil, fmt.Errorf("postgres sink %q: %w", cfg.Name, err)
	}
	pcfg, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres sink %q: %w", cfg.Name, dsn.RedactError(err, dsn.Password(cfg.DSN)))
	}
	s := &Sink{
		cfg:         cfg,
		log:         log.With("sink", cfg.Name),
		desc:        describe(pcfg),
		tables:      map[*change.Relation]*table{},
		lastRel:     map[uint32]*change.Relation{},
		staged:      map[int]bool{},
		copyMinRows: defaultCopyMinRows,
		pcfg:        pcfg,
	}
	switch cfg.Flavor {
	case FlavorDSQL:
		s.copyMinRows = 0 // no COPY staging: DSQL has no temporary tables
		s.dsql = &dsqlState{}
	case FlavorCitus:
		s.copyMinRows = 0 // statements by key (citus.go), no staging joins
	}
	if _, ok := pcfg.RuntimeParams["application_name"]; !ok {
		pcfg.RuntimeParams["application_name"] = "cdcd sink " + cfg.Name
	}
	if s.conn, err = s.connect(ctx); err != nil {
		return nil, classify(s.errorf("%w", err), false)
	}
	s.setupAsync(ctx) // before setup reads the checkpoint row: durable only once flushed
	if err := s.setup(ctx, ckSchema, ckTable); err != nil {
		s.conn.Close(context.WithoutCancel(ctx))
		return nil, classify(s.errorf("%w", err), s.conn.IsClosed())
	}
	s.log.Info("postgres sink connected", "target", s.desc, "checkpoint_table", cfg.CheckpointTable,
		"async_commit", s.async)
	return s, nil
}

// prepareSession makes conn a replica session (not on DSQL, which has
// neither the setting nor the triggers and foreign keys it silences) and
// sets the statement timeout.
func (s *Sink) prepareSession(ctx context.Context, conn *pgx.Conn) error {
	if !s.dsqlMode() {
		if _, err := conn.Exec(ctx, "SET session_replication_role = replica"); err != nil {
			return fmt.Errorf("SET session_replication_role = replica (needs a superuser, rds_superuser or GRANT SET ON PARAMETER): %w", err)
		}
	}
	if s.cfg.Flavor == FlavorPostgres {
		// Every join the sink runs is a batch of keys (an unnest of at most
		// a batch of rows) against a target table by its key: probing the
		// key index per batch row is right whatever the table's size. The
		// planner, which cannot see inside the arrays, otherwise hashes a
		// sequential scan of the whole target once per statement — for a
		// large transaction applied in chunks on a large table, quadratic.
		if _, err := conn.Exec(ctx, "SET enable_hashjoin = off; SET enable_mergejoin = off"); err != nil {
			return fmt.Errorf("setting the session's join methods: %w", err)
		}
	}
	if s.cfg.StatementTimeout > 0 {
		ms := strconv.FormatInt(s.cfg.StatementTimeout.Milliseconds(), 10)
		if _, err := conn.Exec(ctx, "SET statement_timeout = "+ms); err != nil {
			return fmt.Errorf("setting statement_timeout: %w", err)
		}
	}
	return nil
}

// setup prepares the session and the checkpoint table.
func (s *Sink) setup(ctx context.Context, ckSchema, ckTable string) error {
	if err := s.prepareSession(ctx, s.conn); err != nil {
		return err
	}
	if ckSchema == "" {
		s.checkpoint = pgx.Identifier{ckTable}.Sanitize()
	} else {
		s.checkpoint = pgx.Identifier{ckSchema, ckTable}.Sanitize()
	}
	// Look before creating: CREATE … IF NOT EXISTS checks privileges first,
	// and a sink user may lack them on a database prepared for it.
	var exists bool
	if err := s.conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s.checkpoint).Scan(&exists); err != nil {
		return fmt.Errorf("looking for checkpoint table %s: %w", s.cfg.CheckpointTable, err)
	}
	if exists {
		return s.checkCheckpointTable(ctx)
	}
	if ckSchema != "" {
		if _, err := s.conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{ckSchema}.Sanitize()); err != nil {
			return fmt.Errorf("creating checkpoint schema %s: %w", ckSchema, err)
		}
	}
	if _, err := s.conn.Exec(ctx, s.checkpointDDL()); err != nil {
		return fmt.Errorf("creating checkpoint table %s: %w", s.cfg.CheckpointTable, err)
	}
	return s.checkCheckpointTable(ctx)
}

// Apply writes b in the open target transaction, beginning one if none is
// open. Unless b is Partial it then stores b.Position in the checkpoint table
// and commits, so data and position become durable together; a Partial batch
// leaves the transaction open for the next Apply. On error everything not
// yet committed, the earlier parts of a Partial transaction included, is
// rolled back.
func (s *Sink) Apply(ctx context.Context, b *sink.Batch) (err error) {
	if s.conn == nil || s.conn.IsClosed() {
		return sink.Retriable(s.errorf("the connection is closed: recreate the sink"))
	}
	defer func() {
		if err != nil {
			s.rollback(ctx)
			err = classify(s.errorf("%w", err), s.conn.IsClosed())
		}
	}()
	if s.dsqlMode() {
		if err := s.applyDSQL(ctx, b); err != nil {
			return err
		}
		if !b.Partial {
			s.committed(b.Position, 0, 0) // synchronous: durable now
		}
		return nil
	}
	steps, err := buildPlan(b.Txs)
	if err != nil {
		return err
	}
	if s.foldable(b, steps) {
		err := s.apply(ctx, b, steps, true)
		if !errors.Is(err, errFoldMissed) {
			return err
		}
		// Nothing was committed: again, upserting the missed keys.
		s.rollback(ctx)
		s.foldOff = foldPause
	}
	return s.apply(ctx, b, steps, false)
}

// apply runs b's steps in the open transaction, or in one it begins, and
// unless b is Partial commits it with b's position: with fold, in the
// round trip of its last segment (fold.go).
func (s *Sink) apply(ctx context.Context, b *sink.Batch, steps []step, fold bool) error {
	if s.tx == nil {
		s.begin = true // with the first statements (begin.go)
	}
	for i, st := range steps {
		if fold && i == len(steps)-1 {
			// Crash safety as below: rows and position in one transaction.
			return s.foldedSegment(ctx, st.Segment, b.Position)
		}
		if err := s.step(ctx, st); err != nil {
			return err
		}
	}
	if b.Partial {
		return nil
	}
	// Crash safety: the position is written in the transaction that holds
	// the batch's rows, so after a crash at any instant the target has
	// either both or neither, and apply resumes after exactly what it has.
	return s.commit(ctx, b.Position)
}

// rollback ends the open transaction after an error, if the connection still
// has one. Staging tables created in it are gone with it.
func (s *Sink) rollback(ctx context.Context) {
	s.begin = false
	if s.tx == nil {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// ErrTxClosed: a round trip that was to begin it failed first.
	if err := s.tx.Rollback(rctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) && !s.conn.IsClosed() {
		s.log.Warn("postgres sink rollback failed", "error", err)
	}
	s.tx = nil
	s.staged = map[int]bool{} // those created in the transaction are gone
	if s.ddl {
		// So is the schema change: look the tables up again.
		s.tables, s.lastRel, s.ddl = map[*change.Relation]*table{}, map[uint32]*change.Relation{}, false
	}
}

// Position returns the position of the last committed batch, the zero
// Position when the sink has not committed one yet.
func (s *Sink) Position(ctx context.Context) (sink.Position, error) {
	if s.conn == nil || s.conn.IsClosed() {
		return sink.Position{}, sink.Retriable(s.errorf("the connection is closed: recreate the sink"))
	}
	if s.dsqlMode() {
		p, err := s.loadMarks(ctx)
		if err != nil {
			return p, classify(s.errorf("%w", err), s.conn.IsClosed())
		}
		s.committed(p, 0, 0)
		return p, nil
	}
	p, err := s.readPosition(ctx)
	if err != nil {
		return p, classify(s.errorf("reading position from %s: %w", s.cfg.CheckpointTable, err), s.conn.IsClosed())
	}
	return p, nil
}

// Close rolls back an open Partial transaction and closes the connection.
func (s *Sink) Close(ctx context.Context) error {
	if s.conn == nil {
		return nil
	}
	if s.tx != nil {
		s.rollback(ctx)
	}
	err := s.conn.Close(ctx)
	s.conn = nil
	if err != nil {
		return s.errorf("closing: %w", err)
	}
	return nil
}

// errorf formats an error prefixed with the sink and its target.
func (s *Sink) errorf(format string, args ...any) error {
	return fmt.Errorf("postgres sink %q (%s): "+format, append([]any{s.cfg.Name, s.desc}, args...)...)
}

// describe names the target for errors and logs, without its password.
func describe(c *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s user=%s", c.Host, c.Port, c.Database, c.User)
}

// splitTable splits "schema.table" (or "table") into its parts, unquoted.
func splitTable(name string) (schema, table string, err error) {
	parts := strings.Split(name, ".")
	switch {
	case len(parts) == 1 && parts[0] != "":
		return "", parts[0], nil
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return parts[0], parts[1], nil
	}
	return "", "", fmt.Errorf("checkpoint table %q: want schema.table or table", name)
}
