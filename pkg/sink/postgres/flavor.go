package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/dsn"
	"github.com/cdcd-io/cdcd/pkg/schema"
)

// Flavor names the kind of PostgreSQL-compatible target the sink writes to.
// Each flavor keeps the plain sink's semantics (collapse per key, position
// in the target) and changes only what its target requires.
type Flavor string

const (
	// FlavorPostgres is PostgreSQL, Aurora PostgreSQL or RDS: the default
	// (the empty Flavor means it too).
	FlavorPostgres Flavor = "postgres"
	// FlavorDSQL is Amazon Aurora DSQL: IAM tokens per connection,
	// connections recycled before an hour, batches split into target
	// transactions under DSQL's row, size and time limits, only statements
	// DSQL runs, optimistic-concurrency conflicts retried (see dsql.go).
	FlavorDSQL Flavor = "aurora-dsql"
	// FlavorCitus is Citus (sharded PostgreSQL): schema creation makes
	// distributed and reference tables, apply uses statements Citus routes
	// to one shard (see citus.go).
	FlavorCitus Flavor = "citus"
)

// ParseFlavor returns the flavor named s ("" is FlavorPostgres).
func ParseFlavor(s string) (Flavor, error) {
	switch f := Flavor(s); f {
	case "", FlavorPostgres:
		return FlavorPostgres, nil
	case FlavorDSQL, FlavorCitus:
		return f, nil
	}
	return "", fmt.Errorf("flavor %q is not supported: use postgres, aurora-dsql or citus", s)
}

func (s *Sink) dsqlMode() bool  { return s.cfg.Flavor == FlavorDSQL }
func (s *Sink) citusMode() bool { return s.cfg.Flavor == FlavorCitus }

// connect opens a new connection to the target with the DSN's settings and,
// where the flavor or IAMConfig asks for it, a fresh IAM token as password:
// a token only opens connections, and each is signed anew so a reconnect
// never presents an expired one.
func (s *Sink) connect(ctx context.Context) (*pgx.Conn, error) {
	pcfg := s.pcfg.Copy()
	var err error
	switch {
	case s.dsqlMode():
		if pcfg.Password, err = s.dsqlToken(ctx, pcfg); err != nil {
			return nil, fmt.Errorf("building a DSQL IAM auth token: %w", err)
		}
	case s.cfg.IAM.Region != "":
		if pcfg.Password, err = iamToken(ctx, s.cfg.IAM.Region, pcfg); err != nil {
			return nil, fmt.Errorf("building an IAM auth token: %w", err)
		}
	}
	conn, err := pgx.ConnectConfig(ctx, pcfg)
	if err != nil {
		// The password (or IAM token) is hidden, should the driver echo it.
		return nil, fmt.Errorf("connecting: %w", dsn.RedactError(err, pcfg.Password))
	}
	s.connectedAt = s.now()
	return conn, nil
}

func (s *Sink) now() time.Time {
	if s.cfg.now != nil {
		return s.cfg.now()
	}
	return time.Now()
}

// checkpointDDL creates the checkpoint table of the flavor. DSQL has no
// pg_lsn type, and its row carries the chunk marks of dsql.go.
func (s *Sink) checkpointDDL() string {
	if s.dsqlMode() {
		return "CREATE TABLE IF NOT EXISTS " + s.checkpoint + ` (
	name text PRIMARY KEY,
	seq bigint NOT NULL,
	end_lsn text NOT NULL,
	applied_lsn text NOT NULL DEFAULT '0/0',
	tx_lsn text NOT NULL DEFAULT '0/0',
	tx_changes bigint NOT NULL DEFAULT 0,
	tx_chunk bigint NOT NULL DEFAULT 0,
	updated_at timestamptz NOT NULL DEFAULT now())`
	}
	return "CREATE TABLE IF NOT EXISTS " + s.checkpoint + ` (
	name text PRIMARY KEY,
	seq bigint NOT NULL,
	end_lsn pg_lsn NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now())`
}

// dsqlRegion returns the region of a DSQL endpoint host
// (<cluster>.dsql.<region>.on.aws), or "".
func dsqlRegion(host string) string {
	parts := strings.Split(host, ".")
	for i := 1; i+2 < len(parts); i++ {
		if parts[i] == "dsql" && parts[i+2] == "on" {
			return parts[i+1]
		}
	}
	return ""
}

// checkCheckpointTable makes sure an existing checkpoint table has the
// flavor's columns, and reads the sink's row from it (on DSQL with the
// chunk marks).
func (s *Sink) checkCheckpointTable(ctx context.Context) error {
	if !s.dsqlMode() {
		_, err := s.readPosition(ctx)
		return err
	}
	var n int
	err := s.conn.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_attribute
WHERE attrelid = to_regclass($1) AND attname IN ('applied_lsn', 'tx_lsn', 'tx_changes', 'tx_chunk') AND NOT attisdropped`,
		s.checkpoint).Scan(&n)
	if err != nil {
		return fmt.Errorf("reading the columns of checkpoint table %s: %w", s.cfg.CheckpointTable, err)
	}
	if n != 4 {
		return fmt.Errorf("checkpoint table %s has no chunk columns (applied_lsn, tx_lsn, tx_changes, tx_chunk): it was made for another flavor; set checkpoint_table to a new name", s.cfg.CheckpointTable)
	}
	_, err = s.loadMarks(ctx)
	return err
}

// ensureFlavorTables is EnsureTables for DSQL and Citus (pkg/schema's
// EnsureDSQL and EnsureCitus).
func (s *Sink) ensureFlavorTables(ctx context.Context, tables []*schema.Table, create, deferKeys bool) ([]string, error) {
	if s.dsqlMode() {
		return schema.EnsureDSQL(ctx, s.conn, tables, create)
	}
	return schema.EnsureCitus(ctx, s.conn, tables, create, deferKeys, s.citusPlacement)
}

// ConnConfig returns the connection settings a sink with cfg opens a new
// connection with: the DSN's, with a freshly signed IAM token as password
// when the flavor (aurora-dsql) or cfg.IAM asks for one. `cdcd check`
// connects with it.
func ConnConfig(ctx context.Context, cfg Config) (*pgx.ConnConfig, error) {
	pcfg, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, dsn.RedactError(err, dsn.Password(cfg.DSN))
	}
	if cfg.Flavor, err = ParseFlavor(string(cfg.Flavor)); err != nil {
		return nil, err
	}
	cfg.DSQL = cfg.DSQL.defaults()
	s := &Sink{cfg: cfg, pcfg: pcfg}
	switch {
	case s.dsqlMode():
		if pcfg.Password, err = s.dsqlToken(ctx, pcfg); err != nil {
			return nil, fmt.Errorf("building a DSQL IAM auth token: %w", err)
		}
	case cfg.IAM.Region != "":
		if pcfg.Password, err = iamToken(ctx, cfg.IAM.Region, pcfg); err != nil {
			return nil, fmt.Errorf("building an IAM auth token: %w", err)
		}
	}
	return pcfg, nil
}
