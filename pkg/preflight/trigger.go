package preflight

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/source/trigger"
	"github.com/cdcd-io/cdcd/pkg/status"
)

// Trigger is a trigger-table source to check (source.kind: trigger). The
// zero value of every optional field means its default.
type Trigger struct {
	// DSN is the source's connection string. Required.
	DSN string
	// Include selects the tables that get triggers. Default: every table
	// TriggerTables lists.
	Include func(schema, table string) bool
	// Create reports that cdcd installs what is missing when it starts
	// (source.create: true). Default false: missing objects fail.
	Create bool
	// AllowKeyless accepts included tables without a key (captured with
	// whole old rows). Default false: such tables fail.
	AllowKeyless bool
	// WarnBytes: a change log at least this large (pg_total_relation_size)
	// warns. Default 1 GiB.
	WarnBytes int64
	// AlertBytes: a change log at least this large warns that the source's
	// disk is at risk. Default 4 GiB.
	AlertBytes int64
	// MaxAge: a change row older than this warns (it needs
	// track_commit_timestamp to be known). Default 1h.
	MaxAge time.Duration
}

func (t Trigger) defaults() Trigger {
	if t.Include == nil {
		t.Include = func(string, string) bool { return true }
	}
	if t.WarnBytes <= 0 {
		t.WarnBytes = 1 << 30
	}
	if t.AlertBytes <= 0 {
		t.AlertBytes = 4 << 30
	}
	if t.MaxAge <= 0 {
		t.MaxAge = time.Hour
	}
	return t
}

// triggerNames are the triggers Install puts on every table.
var triggerNames = []string{"cdcd_insert", "cdcd_update", "cdcd_delete", "cdcd_truncate"}

// triggerSource checks a trigger-table source and returns its included
// tables. It has no slot, publication or wal_level to check.
func (c *checker) triggerSource(ctx context.Context) []table {
	src := c.cfg.Trigger.defaults()
	conn, desc, err := connect(ctx, src.DSN, "cdcd check", c.cfg.Timeout)
	if err != nil {
		c.add("source.connect", Fail, fmt.Sprintf("cannot connect to the source %s: %v", desc, err),
			"check source.dsn (host, port, database, user, password), that the server runs, and that its pg_hba.conf admits this host and user")
		return nil
	}
	defer conn.Close(context.WithoutCancel(ctx))
	c.add("source.connect", Pass, "connected to "+desc, "")

	var version int
	var versionText string
	var standby bool
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('server_version'), pg_is_in_recovery()`).
		Scan(&version, &versionText, &standby); err != nil {
		c.add("source.version", Fail, "cannot read the server version: "+err.Error(), "check the connection")
		return nil
	}
	switch {
	case version < 130000:
		c.add("source.version", Fail, fmt.Sprintf("PostgreSQL %s: the trigger source needs 13 or later (xid8, pg_current_xact_id, pg_visible_in_snapshot)", versionText),
			"upgrade the source, or use source.kind: postgres")
		return nil
	case standby:
		c.add("source.version", Fail, fmt.Sprintf("PostgreSQL %s (physical standby): triggers need a writable database", versionText),
			"point source.dsn at the primary or at a writable intermediary")
		return nil
	default:
		c.add("source.version", Pass, fmt.Sprintf("PostgreSQL %s (writable)", versionText), "")
	}

	installed := c.changeLog(ctx, conn, src)
	tables := c.triggerTables(ctx, conn, src)
	if installed {
		c.changeLogGrowth(ctx, conn, src)
	}
	return tables
}

// changeLog checks cdcd.change_log, or the right to create it; it returns
// whether it exists.
func (c *checker) changeLog(ctx context.Context, conn *pgx.Conn, src Trigger) bool {
	var user, db string
	var dbCreate, schemaExists, schemaCreate, schemaUsage, exists, sel, del bool
	err := conn.QueryRow(ctx, `SELECT current_user, current_database(),
		has_database_privilege(current_database(), 'CREATE'),
		n.oid IS NOT NULL,
		coalesce(has_schema_privilege(n.oid, 'CREATE'), false),
		coalesce(has_schema_privilege(n.oid, 'USAGE'), false),
		c.oid IS NOT NULL,
		coalesce(has_table_privilege(c.oid, 'SELECT'), false),
		coalesce(has_table_privilege(c.oid, 'DELETE'), false)
		FROM (SELECT) one
		LEFT JOIN pg_namespace n ON n.nspname = 'cdcd'
		LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = 'change_log'`).
		Scan(&user, &db, &dbCreate, &schemaExists, &schemaCreate, &schemaUsage, &exists, &sel, &del)
	if err != nil {
		c.add("source.change_log", Fail, "cannot read the catalog: "+err.Error(), "check the connection")
		return false
	}
	role := ident(user)
	if exists {
		if !schemaUsage || !sel || !del {
			c.add("source.change_log", Fail, fmt.Sprintf("cdcd.change_log exists but role %s cannot read and delete it", user),
				fmt.Sprintf("GRANT USAGE ON SCHEMA cdcd TO %s; GRANT SELECT, DELETE ON cdcd.change_log TO %s (or run cdcd as the role that installed it)", role, role))
			return true
		}
		c.add("source.change_log", Pass, "cdcd.change_log exists and the role may read and delete it", "")
		return true
	}
	canCreate := (!schemaExists && dbCreate) || (schemaExists && schemaCreate)
	switch {
	case !canCreate && !schemaExists:
		c.add("source.change_log", Fail, fmt.Sprintf("cdcd.change_log is not installed, and role %s lacks CREATE on database %s to create schema cdcd", user, db),
			fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s, or have a role with it run cdcd trigger install --config FILE", ident(db), role))
	case !canCreate:
		c.add("source.change_log", Fail, fmt.Sprintf("cdcd.change_log is not installed, and role %s lacks CREATE on schema cdcd", user),
			fmt.Sprintf("GRANT CREATE ON SCHEMA cdcd TO %s, or have the schema's owner run cdcd trigger install --config FILE", role))
	case src.Create:
		c.add("source.change_log", Pass, "cdcd.change_log is not installed; cdcd will install it on start (source.create: true)", "")
	default:
		c.add("source.change_log", Fail, "cdcd.change_log is not installed",
			"run cdcd trigger install --config FILE, or set source.create: true")
	}
	return false
}

// triggerTables checks that every included table has a key and its cdcd
// triggers, or that the role may create them.
func (c *checker) triggerTables(ctx context.Context, conn *pgx.Conn, src Trigger) []table {
	included, err := trigger.Tables(ctx, conn, src.Include)
	if err != nil {
		c.add("source.triggers", Fail, "cannot list the tables: "+err.Error(), "check the connection")
		return nil
	}
	if len(included) == 0 {
		c.add("source.triggers", Fail, "no table is included: nothing would be captured",
			"check tables.include and tables.exclude (schema.table patterns) against the source's tables")
		return nil
	}
	var out []table
	var keyless, missing, disabled, denied []string
	var user string
	for _, t := range included {
		tb := table{schema: t.Schema, name: t.Name}
		out = append(out, tb)
		var hasKey, trig, usage bool
		var have, off int
		err := conn.QueryRow(ctx, `SELECT current_user,
			EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisprimary OR (i.indisreplident AND c.relreplident = 'i'))),
			has_table_privilege(c.oid, 'TRIGGER'), has_schema_privilege(c.relnamespace, 'USAGE'),
			(SELECT count(*) FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace
			   WHERE g.tgrelid = c.oid AND g.tgname = ANY($3) AND pn.nspname = 'cdcd' AND p.proname = 'capture_' || c.oid),
			(SELECT count(*) FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = ANY($3) AND g.tgenabled = 'D')
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
			t.Schema, t.Name, triggerNames).Scan(&user, &hasKey, &trig, &usage, &have, &off)
		if err != nil {
			c.add("source.triggers", Fail, fmt.Sprintf("cannot read table %s: %v", tb, err), "check the connection")
			return out
		}
		if !hasKey {
			keyless = append(keyless, tb.String())
		}
		switch {
		case off > 0:
			disabled = append(disabled, tb.String())
		case have < len(triggerNames) && (!trig || !usage):
			denied = append(denied, tb.String())
		case have < len(triggerNames):
			missing = append(missing, tb.String())
		}
	}
	n := len(included)
	switch {
	case len(keyless) > 0 && !src.AllowKeyless:
		c.add("source.keys", Fail, fmt.Sprintf("%d included tables have no primary key or replica identity index: %s", len(keyless), list(keyless, 5)),
			"ALTER TABLE … ADD PRIMARY KEY (…) (or a unique index and REPLICA IDENTITY USING INDEX), exclude them in tables.exclude, or set source.allow_keyless: true (whole old rows, meant for insert-only tables)")
	case len(keyless) > 0:
		c.add("source.keys", Pass, fmt.Sprintf("%d included tables have no key and are captured with whole old rows (source.allow_keyless): %s", len(keyless), list(keyless, 5)), "")
	default:
		c.add("source.keys", Pass, fmt.Sprintf("all %d included tables have a primary key or replica identity index", n), "")
	}
	role := ident(user)
	switch {
	case len(disabled) > 0:
		c.add("source.triggers", Fail, fmt.Sprintf("cdcd triggers are disabled on %d tables, so their changes are not recorded: %s", len(disabled), list(disabled, 5)),
			"ALTER TABLE … ENABLE TRIGGER cdcd_insert (and cdcd_update, cdcd_delete, cdcd_truncate), then re-synchronise those tables on the target")
	case len(denied) > 0:
		c.add("source.triggers", Fail, fmt.Sprintf("%d included tables lack cdcd triggers and role %s may not create them: %s", len(denied), user, list(denied, 5)),
			fmt.Sprintf("GRANT TRIGGER ON each table TO %s (and USAGE on its schema), or have the owner run cdcd trigger install --config FILE", role))
	case len(missing) > 0 && !src.Create:
		c.add("source.triggers", Fail, fmt.Sprintf("%d of %d included tables lack cdcd triggers: %s", len(missing), n, list(missing, 5)),
			"run cdcd trigger install --config FILE, or set source.create: true")
	case len(missing) > 0:
		c.add("source.triggers", Pass, fmt.Sprintf("%d of %d included tables lack cdcd triggers; cdcd will install them on start (source.create: true)", len(missing), n), "")
	default:
		c.add("source.triggers", Pass, fmt.Sprintf("all %d included tables have their cdcd triggers", n), "")
	}
	return out
}

// changeLogGrowth checks the change log's size and its oldest row's age: a
// stopped cdcd leaves rows there, as a stalled slot holds WAL.
func (c *checker) changeLogGrowth(ctx context.Context, conn *pgx.Conn, src Trigger) {
	var size int64
	var rows int64
	var behind *int64
	var age *float64
	var tsOn string
	// The oldest transaction by the txid index; its commit time is known
	// only with track_commit_timestamp (xid8 → xid through text).
	err := conn.QueryRow(ctx, `SELECT pg_total_relation_size('cdcd.change_log'),
		(SELECT reltuples::bigint FROM pg_class WHERE oid = 'cdcd.change_log'::regclass),
		(pg_snapshot_xmax(pg_current_snapshot())::text::numeric - o.txid::text::numeric)::bigint, -- no xid assigned: check only reads
		CASE WHEN current_setting('track_commit_timestamp') = 'on' AND o.txid IS NOT NULL
		  THEN extract(epoch FROM now() - pg_xact_commit_timestamp((o.txid::text::numeric % 4294967296)::text::xid)) END,
		current_setting('track_commit_timestamp')
		FROM (SELECT) one LEFT JOIN (SELECT txid FROM cdcd.change_log ORDER BY txid LIMIT 1) o ON true`).
		Scan(&size, &rows, &behind, &age, &tsOn)
	if err != nil {
		c.add("source.change_log_size", Fail, "cannot read the change log's size: "+err.Error(), "check the connection and the role's SELECT on cdcd.change_log")
		return
	}
	detail := fmt.Sprintf("cdcd.change_log takes %s", status.Bytes(size))
	switch {
	case size >= src.AlertBytes:
		c.add("source.change_log_size", Warn, detail+fmt.Sprintf(", past wal_guard.alert_bytes (%s): the source's disk fills while cdcd is stopped", status.Bytes(src.AlertBytes)),
			"start cdcd now (it deletes what the trail holds); if cdcd will not run again, cdcd trigger uninstall --config FILE")
	case size >= src.WarnBytes:
		c.add("source.change_log_size", Warn, detail+fmt.Sprintf(", past wal_guard.warn_bytes (%s)", status.Bytes(src.WarnBytes)),
			"start cdcd (it deletes what the trail holds), and VACUUM cdcd.change_log once it has caught up")
	default:
		c.add("source.change_log_size", Pass, detail, "")
	}
	switch {
	case behind == nil:
		c.add("source.change_log_age", Pass, "the change log is empty", "")
	case age != nil && time.Duration(*age*float64(time.Second)) > src.MaxAge:
		d := time.Duration(*age * float64(time.Second)).Round(time.Second)
		c.add("source.change_log_age", Warn, fmt.Sprintf("the oldest change row is %s old (%d transactions ago, about %d rows waiting): cdcd has not read it", d, *behind, max(rows, 0)),
			"start cdcd; if it runs, check its log for errors")
	case age != nil:
		d := time.Duration(*age * float64(time.Second)).Round(time.Second)
		c.add("source.change_log_age", Pass, fmt.Sprintf("the oldest change row is %s old (%d transactions ago)", d, *behind), "")
	default:
		c.add("source.change_log_age", Pass, fmt.Sprintf("the oldest change row was written %d transactions ago (its age in time needs track_commit_timestamp = on, which is %s)", *behind, tsOn), "")
	}
}
