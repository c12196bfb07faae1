// Package dsqltest makes a real PostgreSQL server enforce Aurora DSQL's
// rules, so that cdcd's aurora-dsql flavor can be tested where no DSQL is to
// be had. It has three parts:
//
//   - A statement log: the cluster runs with log_statement = all and a line
//     prefix carrying the virtual transaction id and application_name;
//     [Violations] reads it back and lists every statement of the watched
//     sessions that DSQL rejects (TEMP or UNLOGGED tables, TRUNCATE, MERGE,
//     SAVEPOINT, session_replication_role, COPY, CREATE INDEX without ASYNC,
//     serial or sequences, foreign keys, unconstrained numeric, types DSQL
//     lacks as columns), and every transaction with more than one DDL
//     statement or with DDL and DML together.
//   - Guards inside the server, which fail the offending statement at once:
//     an event trigger rejecting temporary and unlogged tables and a second
//     DDL in one transaction, and statement-level triggers with transition
//     tables on every table that count the rows a transaction modifies and
//     fail it past 3,000 rows or 10 MiB or when it has run 5 minutes.
//   - Conflict injection: a deferred constraint trigger fails every n-th
//     transaction at COMMIT with SQLSTATE 40001, as DSQL's optimistic
//     concurrency control does (OC000).
//
// The guards attach themselves to every table created after [Install] (and
// [Watch] attaches them to existing ones).
package dsqltest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// Limits DSQL enforces per transaction.
const (
	MaxRows  = 3000
	MaxBytes = 10 << 20
)

// Conf returns the settings a cluster needs for the statement log; pass
// them as pgtest.Options.Conf.
func Conf() map[string]string {
	return map[string]string{
		"log_statement":            "all",
		"log_line_prefix":          "%m [%p] vxid=%v app=%a| ",
		"log_parameter_max_length": "0",
		"log_min_error_statement":  "panic",
	}
}

// guardSQL installs the guards in schema dsqltest.
const guardSQL = `
CREATE SCHEMA dsqltest;
CREATE SEQUENCE dsqltest.attempts;
CREATE SEQUENCE dsqltest.injected;
CREATE TABLE dsqltest.settings (conflict_every int NOT NULL);
INSERT INTO dsqltest.settings VALUES (0);

-- Rows and bytes a transaction modifies, in transaction-local settings.
CREATE FUNCTION dsqltest.count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
	b bigint;
	rows bigint;
	bytes bigint;
BEGIN
	IF TG_OP = 'DELETE' THEN
		SELECT count(*), coalesce(sum(pg_column_size(r.*)), 0) INTO n, b FROM old_rows r;
	ELSE
		SELECT count(*), coalesce(sum(pg_column_size(r.*)), 0) INTO n, b FROM new_rows r;
	END IF;
	IF n = 0 THEN
		RETURN NULL;
	END IF;
	IF coalesce(current_setting('dsqltest.ddl', true), '') NOT IN ('', '0') THEN
		RAISE EXCEPTION 'dsqltest: DSQL rejects DDL and DML in one transaction (% on %)', TG_OP, TG_TABLE_NAME;
	END IF;
	rows := coalesce(nullif(current_setting('dsqltest.rows', true), ''), '0')::bigint + n;
	bytes := coalesce(nullif(current_setting('dsqltest.bytes', true), ''), '0')::bigint + b;
	PERFORM set_config('dsqltest.rows', rows::text, true);
	PERFORM set_config('dsqltest.bytes', bytes::text, true);
	IF rows > 3000 THEN
		RAISE EXCEPTION 'dsqltest: transaction modifies % rows, DSQL allows 3000', rows;
	END IF;
	IF bytes > 10485760 THEN
		RAISE EXCEPTION 'dsqltest: transaction modifies % bytes, DSQL allows 10 MiB', bytes;
	END IF;
	IF clock_timestamp() - now() > interval '5 minutes' THEN
		RAISE EXCEPTION 'dsqltest: transaction runs longer than DSQL''s 5 minutes';
	END IF;
	RETURN NULL;
END $$;

-- At COMMIT, every n-th transaction that wrote a row fails with 40001.
CREATE FUNCTION dsqltest.conflict() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	every int;
BEGIN
	IF current_setting('dsqltest.conflict_checked', true) = 'on' THEN
		RETURN NULL;
	END IF;
	PERFORM set_config('dsqltest.conflict_checked', 'on', true);
	SELECT conflict_every INTO every FROM dsqltest.settings;
	IF every > 0 AND nextval('dsqltest.attempts') % every = 0 THEN
		PERFORM nextval('dsqltest.injected');
		RAISE EXCEPTION 'dsqltest: injected optimistic concurrency conflict' USING ERRCODE = '40001', DETAIL = 'OC000';
	END IF;
	RETURN NULL;
END $$;

CREATE FUNCTION dsqltest.watch(t regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('dsqltest.installing', 'on', true);
	EXECUTE format('CREATE TRIGGER dsqltest_ins AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION dsqltest.count_rows()', t);
	EXECUTE format('CREATE TRIGGER dsqltest_upd AFTER UPDATE ON %s REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION dsqltest.count_rows()', t);
	EXECUTE format('CREATE TRIGGER dsqltest_del AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION dsqltest.count_rows()', t);
	EXECUTE format('CREATE CONSTRAINT TRIGGER dsqltest_conflict AFTER INSERT OR UPDATE OR DELETE ON %s DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION dsqltest.conflict()', t);
	-- Fire whatever session_replication_role says.
	EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER dsqltest_ins, ENABLE ALWAYS TRIGGER dsqltest_upd, ENABLE ALWAYS TRIGGER dsqltest_del, ENABLE ALWAYS TRIGGER dsqltest_conflict', t);
	PERFORM set_config('dsqltest.installing', '', true);
END $$;

CREATE FUNCTION dsqltest.on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE
	cmd record;
	n int;
BEGIN
	IF current_setting('dsqltest.installing', true) = 'on' OR current_setting('dsqltest.off', true) = 'on' THEN
		RETURN;
	END IF;
	n := coalesce(nullif(current_setting('dsqltest.ddl', true), ''), '0')::int + 1;
	PERFORM set_config('dsqltest.ddl', n::text, true);
	IF n > 1 THEN
		RAISE EXCEPTION 'dsqltest: DSQL runs one DDL statement per transaction (second: %)', tg_tag;
	END IF;
	IF coalesce(current_setting('dsqltest.rows', true), '') NOT IN ('', '0') THEN
		RAISE EXCEPTION 'dsqltest: DSQL rejects DDL and DML in one transaction (%)', tg_tag;
	END IF;
	FOR cmd IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
		IF cmd.command_tag = 'CREATE TABLE' AND cmd.object_type = 'table' THEN
			IF (SELECT relpersistence FROM pg_class WHERE oid = cmd.objid) <> 'p' THEN
				RAISE EXCEPTION 'dsqltest: DSQL has no temporary or unlogged tables (%)', cmd.object_identity;
			END IF;
			PERFORM dsqltest.watch(cmd.objid::regclass);
		END IF;
	END LOOP;
END $$;
CREATE EVENT TRIGGER dsqltest_ddl ON ddl_command_end EXECUTE FUNCTION dsqltest.on_ddl();
`

// Install puts the guards into database db of c (superuser). Tables
// created afterwards are watched; see Watch for existing ones.
func Install(t testing.TB, c *pgtest.Cluster, db string) {
	t.Helper()
	c.ExecT(t, db, "SET dsqltest.off = on", guardSQL)
}

// Watch attaches the row-count and conflict triggers to the existing
// tables of schema (those of schema dsqltest excluded).
func Watch(t testing.TB, c *pgtest.Cluster, db, schema string) {
	t.Helper()
	c.ExecT(t, db, "SET dsqltest.off = on", fmt.Sprintf(`SELECT dsqltest.watch(c.oid::regclass) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = '%s' AND c.relkind = 'r' AND NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = c.oid AND tgname = 'dsqltest_ins')`, schema))
}

// InjectConflicts makes every n-th writing transaction fail at COMMIT
// with SQLSTATE 40001; 0 stops it.
func InjectConflicts(t testing.TB, c *pgtest.Cluster, db string, every int) {
	t.Helper()
	c.ExecT(t, db, fmt.Sprintf("UPDATE dsqltest.settings SET conflict_every = %d", every))
}

// Injected returns how many conflicts were injected in db.
func Injected(t testing.TB, c *pgtest.Cluster, db string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM dsqltest.injected").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Statement is one logged statement of a watched session.
type Statement struct {
	PID, VXID, App, SQL string
}

// rejected are the statement shapes DSQL does not run, with the reason.
var rejected = []struct {
	re     *regexp.Regexp
	why    string
	unless *regexp.Regexp // the statement is fine when this matches
}{
	{regexp.MustCompile(`(?is)\bCREATE\s+(GLOBAL\s+|LOCAL\s+)?TEMP(ORARY)?\b|\bpg_temp\b`), "temporary table", nil},
	{regexp.MustCompile(`(?is)\bUNLOGGED\b`), "unlogged table", nil},
	{regexp.MustCompile(`(?is)^\s*TRUNCATE\b`), "TRUNCATE", nil},
	{regexp.MustCompile(`(?is)\bMERGE\s+INTO\b`), "MERGE", nil},
	{regexp.MustCompile(`(?is)\b(SAVEPOINT|ROLLBACK\s+TO)\b`), "SAVEPOINT", nil},
	{regexp.MustCompile(`(?is)session_replication_role`), "session_replication_role", nil},
	{regexp.MustCompile(`(?is)^\s*COPY\b`), "COPY", nil},
	{regexp.MustCompile(`(?is)^\s*CREATE\s+(UNIQUE\s+)?INDEX\b`), "CREATE INDEX without ASYNC", regexp.MustCompile(`(?is)^\s*CREATE\s+(UNIQUE\s+)?INDEX\s+ASYNC\b`)},
	{regexp.MustCompile(`(?is)^\s*ALTER\s+TABLE\b.*\bADD\s+(CONSTRAINT\s+\S+\s+)?PRIMARY\s+KEY`), "primary key added after CREATE TABLE", nil},
	{regexp.MustCompile(`(?is)\b(small|big)?serial\b|\bnextval\s*\(|\bCREATE\s+SEQUENCE\b|\bGENERATED\s+(ALWAYS|BY\s+DEFAULT)\s+AS\s+IDENTITY\b`), "serial, sequence or identity", nil},
	{regexp.MustCompile(`(?is)\bREFERENCES\b|\bFOREIGN\s+KEY\b`), "foreign key", nil},
	{regexp.MustCompile(`(?is)\bCREATE\s+(TYPE|DOMAIN|TRIGGER|EXTENSION|FUNCTION)\b`), "CREATE TYPE/DOMAIN/TRIGGER/EXTENSION/FUNCTION", nil},
	{regexp.MustCompile(`(?is)^\s*CREATE\s+TABLE\b.*\b(numeric|decimal)\b\s*[^(\s]`), "numeric column without precision", nil},
	{regexp.MustCompile(`(?is)^\s*CREATE\s+TABLE\b.*(\b(jsonb?|inet|cidr|macaddr8?|xml|money|tsvector|pg_lsn|bit|varbit|point|hstore)\b\s*([,)]|NOT\b|NULL\b|DEFAULT\b|PRIMARY\b)|\[\])`), "column type DSQL lacks", nil},
}

// ddl matches statements that are DDL for DSQL's one-per-transaction rule.
var ddl = regexp.MustCompile(`(?is)^\s*(CREATE|ALTER|DROP|COMMENT)\b`)

// dml matches statements that modify rows.
var dml = regexp.MustCompile(`(?is)^\s*(WITH\b.*\b)?(INSERT|UPDATE|DELETE)\b`)

// Violations reads the server log of c and returns the statements of
// sessions whose application_name starts with appPrefix, and one message
// per statement or transaction DSQL would reject.
func Violations(c *pgtest.Cluster, appPrefix string) (stmts []Statement, problems []string, err error) {
	stmts, err = statements(filepath.Join(c.Dir, "server.log"), appPrefix)
	if err != nil {
		return nil, nil, err
	}
	return stmts, check(stmts), nil
}

// check returns what DSQL would reject of stmts.
func check(stmts []Statement) (problems []string) {
	type txKey struct{ pid, vxid string }
	ddlIn := map[txKey]int{}
	dmlIn := map[txKey]bool{}
	for _, s := range stmts {
		for _, r := range rejected {
			if r.re.MatchString(s.SQL) && (r.unless == nil || !r.unless.MatchString(s.SQL)) {
				problems = append(problems, fmt.Sprintf("%s: %s", r.why, abbrev(s.SQL)))
			}
		}
		k := txKey{s.PID, s.VXID}
		if s.VXID == "" {
			continue
		}
		if ddl.MatchString(s.SQL) {
			ddlIn[k]++
			if ddlIn[k] == 2 {
				problems = append(problems, "two DDL statements in one transaction: "+abbrev(s.SQL))
			}
			if dmlIn[k] {
				problems = append(problems, "DDL after DML in one transaction: "+abbrev(s.SQL))
			}
		}
		if dml.MatchString(s.SQL) {
			dmlIn[k] = true
			if ddlIn[k] > 0 {
				problems = append(problems, "DML after DDL in one transaction: "+abbrev(s.SQL))
			}
		}
	}
	return problems
}

// Check fails t on every violation and when no statement of the watched
// sessions was logged (the log is not being read).
func Check(t testing.TB, c *pgtest.Cluster, appPrefix string) []Statement {
	t.Helper()
	stmts, problems, err := Violations(c, appPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(stmts) == 0 {
		t.Fatalf("dsqltest: no statement of sessions %q in the server log", appPrefix)
	}
	for _, p := range problems {
		t.Errorf("dsqltest: DSQL would reject %s", p)
	}
	return stmts
}

var (
	// 2026-11-30 05:40:00.123 UTC [123] vxid=3/45 app=cdcd sink x| LOG:  statement: …
	prefix = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \S+ \[(\d+)\] vxid=(\S*) app=(.*?)\| (\w+):  (.*)$`)
	// statement: SQL, or execute <name>: SQL (extended protocol).
	stmtMsg = regexp.MustCompile(`^(?:statement|execute [^:]*): (.*)$`)
)

func statements(path, appPrefix string) ([]Statement, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		out []Statement
		cur *Statement
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		m := prefix.FindStringSubmatch(line)
		if m == nil {
			if cur != nil { // continuation of a multi-line statement
				cur.SQL += "\n" + line
			}
			continue
		}
		if cur != nil {
			out = append(out, *cur)
			cur = nil
		}
		if m[5] != "LOG" || !strings.HasPrefix(m[4], appPrefix) {
			continue
		}
		sm := stmtMsg.FindStringSubmatch(m[6])
		if sm == nil {
			continue
		}
		cur = &Statement{PID: m[2], VXID: m[3], App: m[4], SQL: sm[1]}
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out, sc.Err()
}

func abbrev(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
