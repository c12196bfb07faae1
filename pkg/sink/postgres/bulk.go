package postgres

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/schema"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

var (
	_ sink.BulkLoader    = (*Sink)(nil)
	_ sink.SchemaCreator = (*Sink)(nil)
)

// chunksTable is where loaded snapshot chunks are recorded, next to the
// checkpoint table.
func (s *Sink) chunksTable() string {
	sch, _, _ := splitTable(s.cfg.CheckpointTable)
	if sch == "" {
		return pgx.Identifier{"cdcd_snapshot_chunks"}.Sanitize()
	}
	return pgx.Identifier{sch, "snapshot_chunks"}.Sanitize()
}

func (s *Sink) ensureChunksTable(ctx context.Context) error {
	if s.chunksReady {
		return nil
	}
	var exists bool
	if err := s.conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s.chunksTable()).Scan(&exists); err != nil {
		return fmt.Errorf("looking for %s: %w", s.chunksTable(), err)
	}
	if !exists {
		_, err := s.conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+s.chunksTable()+` (
	name text NOT NULL,
	snapshot text NOT NULL,
	chunk text NOT NULL,
	rows bigint NOT NULL,
	loaded_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (name, snapshot, chunk))`)
		if err != nil {
			return fmt.Errorf("creating %s: %w", s.chunksTable(), err)
		}
	}
	s.chunksReady = true
	return nil
}

// Load copies one snapshot chunk into its target table with COPY and
// records the chunk in the chunks table, in one transaction: after a crash
// the chunk is either loaded and recorded, or neither.
func (s *Sink) Load(ctx context.Context, c *sink.BulkChunk, data io.Reader) (n int64, err error) {
	if s.conn == nil || s.conn.IsClosed() {
		return 0, sink.Retriable(s.errorf("the connection is closed: recreate the sink"))
	}
	if s.tx != nil {
		return 0, s.errorf("load chunk %s: a transaction is open", c.ID)
	}
	if err := s.ensureChunksTable(ctx); err != nil {
		return 0, classify(s.errorf("%w", err), s.conn.IsClosed())
	}
	defer func() {
		if err != nil {
			s.rollback(ctx)
			err = classify(s.errorf("%w", err), s.conn.IsClosed())
		}
	}()
	if s.dsqlMode() {
		return s.loadDSQL(ctx, c, data)
	}
	if s.tx, err = s.conn.Begin(ctx); err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	tbl := pgx.Identifier{c.Schema, c.Table}.Sanitize()
	if c.Truncate {
		s.statements++
		if _, err := s.tx.Exec(ctx, "TRUNCATE "+tbl); err != nil {
			return 0, fmt.Errorf("truncate %s.%s: %w", c.Schema, c.Table, err)
		}
	}
	if data != nil {
		cols := make([]string, len(c.Columns))
		for i, col := range c.Columns {
			cols[i] = pgx.Identifier{col}.Sanitize()
		}
		stmt := "COPY " + tbl + " (" + strings.Join(cols, ", ") + ") FROM STDIN"
		if c.Binary {
			stmt += " WITH (FORMAT binary)"
		}
		s.statements++
		tag, err := s.tx.Conn().PgConn().CopyFrom(ctx, data, stmt)
		if err != nil {
			return 0, fmt.Errorf("copy chunk %s into %s.%s: %w", c.ID, c.Schema, c.Table, err)
		}
		n = tag.RowsAffected()
	}
	// Crash safety: the record of the chunk commits with its rows.
	if _, err := s.tx.Exec(ctx, "INSERT INTO "+s.chunksTable()+" (name, snapshot, chunk, rows) VALUES ($1, $2, $3, $4)",
		s.cfg.Name, c.SnapshotID, c.ID, n); err != nil {
		return 0, fmt.Errorf("record chunk %s: %w", c.ID, err)
	}
	err = s.tx.Commit(ctx)
	s.tx = nil
	if err != nil {
		return 0, fmt.Errorf("commit chunk %s: %w", c.ID, err)
	}
	return n, nil
}

// Loaded returns the chunks of snapshotID recorded by committed loads.
func (s *Sink) Loaded(ctx context.Context, snapshotID string) (map[string]bool, error) {
	if s.conn == nil || s.conn.IsClosed() {
		return nil, sink.Retriable(s.errorf("the connection is closed: recreate the sink"))
	}
	if err := s.ensureChunksTable(ctx); err != nil {
		return nil, classify(s.errorf("%w", err), s.conn.IsClosed())
	}
	rows, err := s.conn.Query(ctx, "SELECT chunk FROM "+s.chunksTable()+" WHERE name = $1 AND snapshot = $2", s.cfg.Name, snapshotID)
	if err != nil {
		return nil, classify(s.errorf("reading %s: %w", s.chunksTable(), err), s.conn.IsClosed())
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, classify(s.errorf("reading %s: %w", s.chunksTable(), err), s.conn.IsClosed())
	}
	m := make(map[string]bool, len(done))
	for _, c := range done {
		m[c] = true
	}
	return m, nil
}

// EnsureTables creates missing target schemas, types and tables and checks
// existing ones (see schema.Ensure).
func (s *Sink) EnsureTables(ctx context.Context, tables []*schema.Table, create, deferKeys bool) ([]string, error) {
	var (
		created []string
		err     error
	)
	if s.dsqlMode() || s.citusMode() {
		created, err = s.ensureFlavorTables(ctx, tables, create, deferKeys)
	} else {
		created, err = schema.Ensure(ctx, s.conn, tables, create, deferKeys)
	}
	if err != nil {
		return created, s.errorf("%w", err)
	}
	return created, nil
}

// FinishTable adds the primary key EnsureTables deferred.
func (s *Sink) FinishTable(ctx context.Context, t *schema.Table) error {
	if err := schema.AddPrimaryKey(ctx, s.conn, t); err != nil {
		return classify(s.errorf("%w", err), s.conn.IsClosed())
	}
	return nil
}
