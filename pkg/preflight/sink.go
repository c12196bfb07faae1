package preflight

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/schema"
	"github.com/cdcd-io/cdcd/pkg/sink/dynamodb"
	"github.com/cdcd-io/cdcd/pkg/sink/oracle"
	pgsink "github.com/cdcd-io/cdcd/pkg/sink/postgres"
	"github.com/cdcd-io/cdcd/pkg/status"
)

// sink checks one sink: reachable, and for postgres its tables and rights.
func (c *checker) sink(ctx context.Context, s Sink, tables []table) {
	key := "sink." + s.Name
	switch s.Kind {
	case "postgres":
		c.postgresSink(ctx, key, s, tables)
	case "kafka":
		var down []string
		for _, b := range s.Brokers {
			conn, err := (&net.Dialer{Timeout: c.cfg.Timeout}).DialContext(ctx, "tcp", b)
			if err != nil {
				down = append(down, fmt.Sprintf("%s (%v)", b, err))
				continue
			}
			conn.Close()
		}
		if len(down) == len(s.Brokers) {
			c.add(key+".connect", Fail, "no broker reachable: "+list(down, 3), "check brokers: host:port, DNS and firewalls")
		} else if len(down) > 0 {
			c.add(key+".connect", Warn, "some brokers unreachable: "+list(down, 3), "check brokers")
		} else {
			c.add(key+".connect", Pass, "brokers reachable: "+strings.Join(s.Brokers, ", "), "")
		}
	case "oracle":
		c.oracleSink(ctx, key, s, tables)
	case "dynamodb":
		c.dynamoDBSink(ctx, key, s, tables)
	default:
		c.add(key, Pass, s.Kind+" sink: nothing to check", "")
	}
}

// oracleSink checks an Oracle target: Instant Client, connection,
// checkpoint table, tables with compatible columns, and write rights. The
// source tables' columns are read from the source catalog for the column
// comparison.
func (c *checker) oracleSink(ctx context.Context, key string, s Sink, tables []table) {
	if s.Oracle == nil {
		c.add(key+".config", Fail, "no oracle settings were passed to the check", "report this as a bug")
		return
	}
	defs := c.sourceTables(ctx, tables)
	for _, f := range oracle.Check(ctx, *s.Oracle, defs, c.cfg.Timeout) {
		st := Fail
		switch {
		case f.OK:
			st = Pass
		case f.Warn:
			st = Warn
		}
		remedy := f.Remedy
		if st == Pass {
			remedy = ""
		}
		c.add(key+"."+f.Check, st, f.Detail, remedy)
	}
}

// sourceTables reads the definitions of the captured tables from the
// source catalog; a table it cannot read is passed by name only (its
// presence on the target is still checked, its columns not).
func (c *checker) sourceTables(ctx context.Context, tables []table) []*schema.Table {
	d := c.cfg.Source.DSN
	if c.cfg.Trigger != nil {
		d = c.cfg.Trigger.DSN
	}
	defs := make([]*schema.Table, 0, len(tables))
	var conn *pgx.Conn
	if len(tables) > 0 {
		conn, _, _ = connect(ctx, d, "cdcd check", c.cfg.Timeout)
	}
	if conn != nil {
		defer conn.Close(context.Background())
	}
	for _, t := range tables {
		name := schema.Name{Schema: t.schema, Name: t.name}
		if conn != nil {
			var oid uint32
			err := conn.QueryRow(ctx, `SELECT coalesce(to_regclass($1)::oid, 0)`, pgx.Identifier{t.schema, t.name}.Sanitize()).Scan(&oid)
			if err == nil && oid != 0 {
				if def, err := schema.Read(ctx, conn, oid); err == nil {
					defs = append(defs, def)
					continue
				}
			}
		}
		defs = append(defs, &schema.Table{Source: name, Target: name})
	}
	return defs
}

// dynamoDBSink checks that the endpoint answers with the AWS credentials
// and that every table exists keyed as the sink writes it (the source's
// primary key, or the configured keys).
func (c *checker) dynamoDBSink(ctx context.Context, key string, s Sink, tables []table) {
	if s.DynamoDB == nil {
		c.add(key, Warn, "dynamodb sink without its configuration: not checked", "")
		return
	}
	rels, err := c.primaryKeys(ctx, tables)
	if err != nil {
		c.add(key+".tables", Fail, "cannot read the source tables' primary keys: "+err.Error(), "check the source connection")
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 3*c.cfg.Timeout)
	defer cancel()
	res, err := dynamodb.Check(cctx, *s.DynamoDB, rels)
	if err != nil {
		c.add(key+".connect", Fail, "DynamoDB did not answer: "+err.Error(),
			"check endpoint and region, and the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role) and their dynamodb:* rights")
		return
	}
	c.add(key+".connect", Pass, "reached DynamoDB at "+res.Reached+" with the AWS credentials", "")
	switch {
	case len(res.Unkeyed) > 0:
		c.add(key+".keys", Fail, list(res.Unkeyed, 3), "give the tables a primary key, or set keys: {schema.table: {partition: …, sort: …}} in the sink")
	case len(res.Mismatched) > 0:
		c.add(key+".tables", Fail, "key schema differs: "+list(res.Mismatched, 3), "recreate the tables with the key shown, or set keys for those tables")
	case len(res.Missing) > 0 && s.DynamoDB.CreateTables:
		c.add(key+".tables", Pass, fmt.Sprintf("%d of %d tables will be created (schema.create): %s", len(res.Missing), res.Tables, list(res.Missing, 3)), "")
	case len(res.Missing) > 0:
		c.add(key+".tables", Fail, fmt.Sprintf("%d of %d tables are missing: %s", len(res.Missing), res.Tables, list(res.Missing, 3)),
			"create them with the key shown, or set schema.create: true")
	default:
		c.add(key+".tables", Pass, fmt.Sprintf("all %d tables exist with the expected key schema", res.Tables), "")
	}
}

// primaryKeys reads the primary-key columns of the source tables.
func (c *checker) primaryKeys(ctx context.Context, tables []table) ([]*change.Relation, error) {
	if len(tables) == 0 {
		return nil, nil
	}
	src := c.cfg.Source.DSN
	if c.cfg.Trigger != nil {
		src = c.cfg.Trigger.DSN
	}
	conn, _, err := connect(ctx, src, "cdcd check", c.cfg.Timeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	var rels []*change.Relation
	for _, t := range tables {
		rel := &change.Relation{Schema: t.schema, Name: t.name, ReplicaIdentity: 'd'}
		rows, err := conn.Query(ctx, `SELECT a.attname, a.atttypid FROM pg_index i
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
			WHERE i.indrelid = to_regclass($1) AND i.indisprimary
			ORDER BY array_position(i.indkey::int2[], a.attnum)`, pgx.Identifier{t.schema, t.name}.Sanitize())
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var col change.Column
			if err := rows.Scan(&col.Name, &col.TypeOID); err != nil {
				return nil, err
			}
			rel.PrimaryKey = append(rel.PrimaryKey, len(rel.Columns))
			rel.Columns = append(rel.Columns, col)
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		rels = append(rels, rel)
	}
	return rels, nil
}

func (c *checker) postgresSink(ctx context.Context, key string, s Sink, tables []table) {
	if s.Postgres.Flavor == pgsink.FlavorDSQL {
		c.dsqlSink(ctx, key, s, tables)
		return
	}
	c.out = append(c.out, tlsCheck(key+".tls", "sink "+s.Name, s.DSN, s.IAM))
	if s.IAM {
		c.add(key+".connect", Warn, "IAM authentication is not checked by cdcd check", "run cdcd run once and watch its log")
		return
	}
	conn, desc, err := connect(ctx, s.DSN, "cdcd check", c.cfg.Timeout)
	if err != nil {
		c.add(key+".connect", Fail, fmt.Sprintf("cannot connect to the target %s: %v", desc, err),
			"check the sink's dsn (host, port, database, user, password), that the target runs, and that it admits this host")
		return
	}
	defer conn.Close(context.Background())
	c.add(key+".connect", Pass, "connected to "+desc, "")
	if s.Postgres.Flavor == pgsink.FlavorCitus {
		c.citusSink(ctx, key, conn, s, tables)
	}

	var missing []string
	for _, t := range tables {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{t.schema, t.name}.Sanitize()).Scan(&ok); err != nil {
			c.add(key+".tables", Fail, "cannot look up target tables: "+err.Error(), "check the connection")
			return
		}
		if !ok {
			missing = append(missing, t.String())
		}
	}
	if len(missing) > 0 {
		c.add(key+".tables", Fail, fmt.Sprintf("%d of %d published tables are missing on the target: %s", len(missing), len(tables), list(missing, 5)),
			"create them on the target first, e.g. pg_dump --schema-only --table … source | psql target")
	} else {
		c.add(key+".tables", Pass, fmt.Sprintf("all %d published tables exist on the target", len(tables)), "")
	}

	// Applying needs a replica session: try it in a transaction that is
	// rolled back.
	tx, err := conn.Begin(ctx)
	if err == nil {
		_, err = tx.Exec(ctx, "SET LOCAL session_replication_role = replica")
		_ = tx.Rollback(ctx)
	}
	if err != nil {
		c.add(key+".replica_role", Fail, "cannot SET session_replication_role = replica: "+err.Error(),
			"apply as a superuser or rds_superuser, or GRANT SET ON PARAMETER session_replication_role TO the user (PostgreSQL 15+)")
	} else {
		c.add(key+".replica_role", Pass, "may SET session_replication_role = replica", "")
	}

	ck := s.CheckpointTable
	if ck == "" {
		ck = "cdcd.checkpoint"
	}
	parts := strings.Split(ck, ".")
	var exists, canWrite, canCreate bool
	err = conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL,
		coalesce(has_table_privilege(to_regclass($1), 'SELECT, INSERT, UPDATE'), false),
		CASE WHEN $2 = '' THEN has_database_privilege(current_database(), 'CREATE')
		     ELSE coalesce(has_schema_privilege((SELECT oid FROM pg_namespace WHERE nspname = $2), 'CREATE'), has_database_privilege(current_database(), 'CREATE')) END`,
		pgx.Identifier(parts).Sanitize(), schemaOf(parts)).Scan(&exists, &canWrite, &canCreate)
	switch {
	case err != nil:
		c.add(key+".checkpoint", Fail, "cannot check checkpoint table "+ck+": "+err.Error(), "check the connection")
	case exists && !canWrite:
		c.add(key+".checkpoint", Fail, "checkpoint table "+ck+" exists but the user cannot SELECT, INSERT and UPDATE it", "GRANT SELECT, INSERT, UPDATE ON "+ck+" TO the user")
	case exists:
		c.add(key+".checkpoint", Pass, "checkpoint table "+ck+" is writable", "")
	case !canCreate:
		c.add(key+".checkpoint", Fail, "checkpoint table "+ck+" does not exist and the user cannot create it", "create it as the DBA (see pkg/sink/postgres) or GRANT CREATE to the user")
	default:
		c.add(key+".checkpoint", Pass, "checkpoint table "+ck+" will be created", "")
	}
}

func schemaOf(parts []string) string {
	if len(parts) == 2 {
		return parts[0]
	}
	return ""
}

// trail checks that the trail directory is writable and has room.
func (c *checker) trail() {
	dir := c.cfg.TrailDir
	probeDir := dir
	for {
		if _, err := os.Stat(probeDir); err == nil {
			break
		}
		parent := filepath.Dir(probeDir)
		if parent == probeDir {
			break
		}
		probeDir = parent
	}
	f, err := os.CreateTemp(probeDir, ".cdcd-check-*")
	if err == nil {
		_, err = f.Write([]byte("cdcd"))
		if err == nil {
			err = f.Sync()
		}
		f.Close()
		os.Remove(f.Name())
	}
	if err != nil {
		c.add("trail.dir", Fail, fmt.Sprintf("cannot write in %s: %v", probeDir, err),
			"create the directory for the cdcd user (systemd: StateDirectory=cdcd) or point trail.dir elsewhere")
		return
	}
	if probeDir != dir {
		c.add("trail.dir", Pass, fmt.Sprintf("%s does not exist yet; cdcd will create it (%s is writable)", dir, probeDir), "")
	} else {
		c.add("trail.dir", Pass, dir+" is writable", "")
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(probeDir, &st); err != nil {
		c.add("trail.disk", Warn, "cannot read free space: "+err.Error(), "")
		return
	}
	free := int64(st.Bavail) * st.Bsize
	detail := fmt.Sprintf("%s free for the trail", status.Bytes(free))
	switch {
	case free < c.cfg.MinFreeBytes:
		c.add("trail.disk", Fail, detail, "free space: the trail holds whatever the slowest sink has not applied")
	case free < c.cfg.WarnFreeBytes:
		c.add("trail.disk", Warn, detail+": little room for a sink outage", "give the trail a larger disk")
	default:
		c.add("trail.disk", Pass, detail, "")
	}
}
