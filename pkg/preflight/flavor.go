package preflight

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/dsn"
	"github.com/cdcd-io/cdcd/pkg/schema"
	pgsink "github.com/cdcd-io/cdcd/pkg/sink/postgres"
)

// dsqlSink checks an aurora-dsql sink: every rule of DSQL the configured
// tables would break gets its own check, named sink.<name>.dsql.<rule>.
func (c *checker) dsqlSink(ctx context.Context, key string, s Sink, tables []table) {
	c.out = append(c.out, tlsCheck(key+".tls", "sink "+s.Name, s.DSN, true))
	pcfg, err := pgsink.ConnConfig(ctx, s.Postgres)
	if err != nil {
		c.add(key+".dsql.token", Fail, "cannot sign a DSQL IAM token: "+err.Error(),
			"give cdcd AWS credentials (environment, shared config, web identity or instance role) and, when the host is not <cluster>.dsql.<region>.on.aws, dsql.region")
		return
	}
	c.add(key+".dsql.token", Pass, "signed a DSQL IAM token for "+pcfg.User+"@"+pcfg.Host, "")
	desc := fmt.Sprintf("%s@%s:%d/%s", pcfg.User, pcfg.Host, pcfg.Port, pcfg.Database)
	pcfg.RuntimeParams["application_name"] = "cdcd check"
	cctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	conn, err := pgx.ConnectConfig(cctx, pcfg)
	cancel()
	if err != nil {
		c.add(key+".connect", Fail, fmt.Sprintf("cannot connect to the target %s: %v", desc, dsn.RedactError(err, pcfg.Password)),
			"check the dsn's host and user, that the IAM identity may dsql:DbConnect (dsql:DbConnectAdmin for admin), and the network path")
		return
	}
	defer conn.Close(context.Background())
	c.add(key+".connect", Pass, "connected to "+desc, "")

	c.dsqlSourceRules(ctx, key, tables)
	c.dsqlTargetRules(ctx, key, conn, s, tables)
	c.add(key+".dsql.statements", Pass, fmt.Sprintf(
		"apply splits batches into transactions of at most %d rows, uses no TRUNCATE, temporary table, MERGE, SAVEPOINT or session_replication_role, retries 40001 conflicts",
		maxTxRows(s.Postgres.DSQL)), "")
}

func maxTxRows(d pgsink.DSQLConfig) int {
	if d.MaxTxRows > 0 {
		return d.MaxTxRows
	}
	return 2500
}

// dsqlSourceRules reads the published tables on the source and names what
// DSQL stores differently or not at all.
func (c *checker) dsqlSourceRules(ctx context.Context, key string, tables []table) {
	src := c.cfg.Source.DSN
	if c.cfg.Trigger != nil {
		src = c.cfg.Trigger.DSN
	}
	conn, _, err := connect(ctx, src, "cdcd check", c.cfg.Timeout)
	if err != nil {
		c.add(key+".dsql.types", Warn, "cannot read the source tables to check them against DSQL's types: "+err.Error(), "see the source checks")
		return
	}
	defer conn.Close(context.Background())
	var mapped, keyless []string
	for _, t := range tables {
		var oid uint32
		if err := conn.QueryRow(ctx, "SELECT to_regclass($1)::oid", pgx.Identifier{t.schema, t.name}.Sanitize()).Scan(&oid); err != nil {
			continue // the source checks report it
		}
		def, err := schema.Read(ctx, conn, oid)
		if err != nil {
			c.add(key+".dsql.types", Warn, "cannot read source table "+t.String()+": "+err.Error(), "see the source checks")
			return
		}
		m, k := dsqlTableRules(def)
		mapped = append(mapped, m...)
		if k {
			keyless = append(keyless, t.String())
		}
	}
	if len(mapped) > 0 {
		c.add(key+".dsql.types", Warn, fmt.Sprintf("%d source columns have types DSQL does not store; schema.create maps them: %s",
			len(mapped), list(mapped, 8)),
			"accept the mapping (README: aurora-dsql type rule) or create those target columns yourself; values keep PostgreSQL's text form")
	} else {
		c.add(key+".dsql.types", Pass, "every published column has a type DSQL stores", "")
	}
	if len(keyless) > 0 {
		c.add(key+".dsql.keys", Warn, fmt.Sprintf("%d published tables have no primary key: %s", len(keyless), list(keyless, 5)),
			"on DSQL such tables take inserts only (no update, delete or TRUNCATE), and a snapshot chunk retried after a crash inserts its rows again: add primary keys")
	} else {
		c.add(key+".dsql.keys", Pass, "every published table has a primary key", "")
	}
}

// dsqlTableRules lists t's columns DSQL stores as another type, and
// whether t lacks a primary key.
func dsqlTableRules(t *schema.Table) (mapped []string, keyless bool) {
	for _, col := range t.Columns {
		if _, note := schema.DSQLType(col, t.Types); note != "" {
			mapped = append(mapped, t.Source.String()+"."+col.Name+" ("+note+")")
		}
	}
	return mapped, len(t.PrimaryKey) == 0
}

// dsqlTargetRules checks the target's tables and checkpoint table.
func (c *checker) dsqlTargetRules(ctx context.Context, key string, conn *pgx.Conn, s Sink, tables []table) {
	var missing, keyless []string
	for _, t := range tables {
		var exists, hasKey bool
		err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL,
	EXISTS (SELECT 1 FROM pg_catalog.pg_index WHERE indrelid = to_regclass($1) AND indisprimary)`,
			pgx.Identifier{t.schema, t.name}.Sanitize()).Scan(&exists, &hasKey)
		if err != nil {
			c.add(key+".tables", Fail, "cannot look up target tables: "+err.Error(), "check the connection")
			return
		}
		switch {
		case !exists:
			missing = append(missing, t.String())
		case !hasKey:
			keyless = append(keyless, t.String())
		}
	}
	if len(missing) > 0 {
		c.add(key+".tables", Fail, fmt.Sprintf("%d of %d published tables are missing on the target: %s", len(missing), len(tables), list(missing, 5)),
			"run with schema.create: true (it makes DSQL tables by cdcd's type rule, primary key inline), or create them yourself")
	} else {
		c.add(key+".tables", Pass, fmt.Sprintf("all %d published tables exist on the target", len(tables)), "")
	}
	if len(keyless) > 0 {
		c.add(key+".dsql.target_keys", Fail, fmt.Sprintf("%d target tables have no primary key: %s", len(keyless), list(keyless, 5)),
			"DSQL sets a table's primary key only in CREATE TABLE: recreate those tables with the source's key")
	}
	ck := s.CheckpointTable
	if ck == "" {
		ck = pgsink.DefaultCheckpointTable
	}
	var exists bool
	var chunkCols int
	err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL, (SELECT count(*) FROM pg_catalog.pg_attribute
	WHERE attrelid = to_regclass($1) AND attname IN ('applied_lsn', 'tx_lsn', 'tx_changes', 'tx_chunk') AND NOT attisdropped)`,
		pgx.Identifier(strings.Split(ck, ".")).Sanitize()).Scan(&exists, &chunkCols)
	switch {
	case err != nil:
		c.add(key+".checkpoint", Fail, "cannot check checkpoint table "+ck+": "+err.Error(), "check the connection")
	case exists && chunkCols != 4:
		c.add(key+".checkpoint", Fail, "checkpoint table "+ck+" lacks the chunk columns of the aurora-dsql flavor (made for another flavor?)",
			"set checkpoint_table to a new name; cdcd creates it")
	case exists:
		c.add(key+".checkpoint", Pass, "checkpoint table "+ck+" has the chunk columns", "")
	default:
		c.add(key+".checkpoint", Pass, "checkpoint table "+ck+" will be created", "")
	}
}

// citusPlacement is how Citus holds one target table.
type citusPlacement struct {
	kind   byte   // pg_dist_partition.partmethod: 'h' hash, 'n' reference; 0 not distributed
	column string // distribution column of a hash-distributed table
	key    []string
}

// citusSink checks a citus sink: the extension, and how each published
// table is distributed.
func (c *checker) citusSink(ctx context.Context, key string, conn *pgx.Conn, s Sink, tables []table) {
	var version string
	err := conn.QueryRow(ctx, "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'citus'").Scan(&version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		c.add(key+".citus.extension", Fail, "the target has no citus extension", "CREATE EXTENSION citus on the coordinator the dsn names, or set flavor: postgres")
		return
	case err != nil:
		c.add(key+".citus.extension", Fail, "cannot look up the citus extension: "+err.Error(), "check the connection")
		return
	}
	c.add(key+".citus.extension", Pass, "citus "+version+" is installed", "")
	var problems []string
	for _, t := range tables {
		name := pgx.Identifier{t.schema, t.name}.Sanitize()
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil || !exists {
			continue // the tables check reports it
		}
		var p citusPlacement
		var method, column *string
		err := conn.QueryRow(ctx, `SELECT (SELECT partmethod::text FROM pg_dist_partition WHERE logicalrelid = $1::regclass),
	(SELECT column_to_column_name(logicalrelid, partkey) FROM pg_dist_partition WHERE logicalrelid = $1::regclass AND partmethod = 'h'),
	array(SELECT a.attname::text FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
	      WHERE i.indrelid = $1::regclass AND i.indisprimary)`, name).Scan(&method, &column, &p.key)
		if err != nil {
			c.add(key+".citus.distribution", Fail, "cannot read the distribution of "+t.String()+": "+err.Error(), "check the connection")
			return
		}
		if method != nil && *method != "" {
			p.kind = (*method)[0]
		}
		if column != nil {
			p.column = *column
		}
		if msg := citusProblem(t.String(), p, s.Postgres.Citus); msg != "" {
			problems = append(problems, msg)
		}
	}
	if len(problems) > 0 {
		c.add(key+".citus.distribution", Fail, strings.Join(problems, "; "),
			"distribute each table on a primary-key column (SELECT create_distributed_table('t', 'col')) or make it a reference table, as the sink's citus section says; or drop it and let schema.create make it")
		return
	}
	c.add(key+".citus.distribution", Pass, fmt.Sprintf("all %d published tables on the target are distributed or reference tables on key columns", len(tables)), "")
}

// citusProblem says what is wrong with how Citus holds table name, given
// the sink's settings; "" when nothing is.
func citusProblem(name string, p citusPlacement, cfg pgsink.CitusConfig) string {
	want := cfg.Distribution[name]
	switch {
	case p.kind == 0:
		return name + " is a local table on the coordinator, not distributed"
	case p.kind == 'n':
		if want != "" {
			return fmt.Sprintf("%s is a reference table, the citus section distributes it by %s", name, want)
		}
	case p.kind != 'h':
		return fmt.Sprintf("%s is distributed by method %q; cdcd supports hash-distributed and reference tables", name, p.kind)
	case len(p.key) == 0:
		return name + " has no primary key: apply finds rows by key"
	case !slices.Contains(p.key, p.column):
		return fmt.Sprintf("%s is distributed by %s, which is not in its primary key (%s): apply could not route by key", name, p.column, strings.Join(p.key, ", "))
	case slices.Contains(cfg.Reference, name):
		return fmt.Sprintf("%s is distributed by %s, the citus section makes it a reference table", name, p.column)
	case want != "" && want != p.column:
		return fmt.Sprintf("%s is distributed by %s, the citus section says %s", name, p.column, want)
	}
	return ""
}
