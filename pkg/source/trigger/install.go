package trigger

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Table names a table to capture.
type Table struct {
	Schema, Name string
}

// String is the quoted, schema-qualified name, as SQL takes it.
func (t Table) String() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// Options configures Install. The zero value is the default.
type Options struct {
	// AllowKeyless captures tables that have neither a primary key nor a
	// replica identity index, storing whole old rows for their updates and
	// deletes (what pgoutput sends under REPLICA IDENTITY FULL). Meant for
	// insert-only tables such as pgbench_history. Default false: such a
	// table is refused with ErrNoKey.
	AllowKeyless bool
	// RowTriggers installs FOR EACH ROW triggers for inserts, updates and
	// deletes instead of statement-level triggers with transition tables.
	// Default false: statement-level triggers, measured faster for bulk
	// statements and no slower for single-row ones (see the package tests).
	RowTriggers bool
}

// The objects Install creates; see the package documentation.
const (
	schemaName   = "cdcd"
	logTable     = "cdcd.change_log"
	logSequence  = "cdcd.change_log_id_seq"
	idTable      = "cdcd.source_id"
	funcPrefix   = "capture_"
	lockKey      = 0x63646364 // "cdcd": serialises concurrent installs
	triggerNames = "cdcd_insert, cdcd_update, cdcd_delete, cdcd_truncate"
)

// pinned are the settings the trigger functions run with, so that the text
// output they store does not depend on the writer's session.
const pinned = `SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres' SET extra_float_digits = 3
 SET bytea_output = 'hex' SET timezone = 'UTC' SET lc_monetary = 'C' SET search_path = pg_catalog, pg_temp`

const schemaSQL = `
CREATE SCHEMA IF NOT EXISTS cdcd;
CREATE SEQUENCE IF NOT EXISTS cdcd.change_log_id_seq CACHE 1;
CREATE TABLE IF NOT EXISTS cdcd.change_log (
	id      bigint NOT NULL DEFAULT nextval('cdcd.change_log_id_seq'),
	txid    xid8   NOT NULL DEFAULT pg_current_xact_id(),
	relid   oid    NOT NULL,
	natts   int2   NOT NULL,
	op      "char" NOT NULL,
	old_row text,
	new_row text
);
ALTER SEQUENCE cdcd.change_log_id_seq OWNED BY cdcd.change_log.id;
CREATE INDEX IF NOT EXISTS change_log_txid_id ON cdcd.change_log (txid, id);
DROP INDEX IF EXISTS cdcd.change_log_txid;
CREATE TABLE IF NOT EXISTS cdcd.source_id (
	one bool   PRIMARY KEY DEFAULT true CHECK (one),
	id  bigint NOT NULL CHECK (id <> 0)
);
`

// sourceIDSQL stores the change log's identity once: a reinstall keeps it.
const sourceIDSQL = `INSERT INTO cdcd.source_id (id) VALUES ($1) ON CONFLICT DO NOTHING`

// target is an included table as the catalog describes it at install time.
type target struct {
	Table
	oid   uint32
	ident byte
	key   []string // column names of the key the trigger projects
	cols  []string // all column names
}

// alias returns a name for a whole-row reference that no column of t has:
// inside the trigger's queries a column name would win over a table alias
// of the same name (a column "r" turns "r::text" into that column's text).
func (t target) alias(base string) string {
	for slices.Contains(t.cols, base) {
		base += "_"
	}
	return pgx.Identifier{base}.Sanitize()
}

// Install creates the change log in schema cdcd and the capture triggers on
// every table, in one transaction. It is idempotent: run again, it
// replaces the functions and triggers (after a key change, say) and keeps
// the change log. Tables without a key are refused with ErrNoKey unless
// opts.AllowKeyless; missing privileges are one ErrPrivilege naming them.
// Install waits for transactions writing the tables to end (CREATE TRIGGER
// takes a SHARE ROW EXCLUSIVE lock).
func Install(ctx context.Context, conn Conn, tables []Table, opts Options) error {
	var version int
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		return fmt.Errorf("install trigger capture: read server version: %w", err)
	}
	if version < 130000 {
		return fmt.Errorf("install trigger capture: server version %d: %w", version, ErrVersion)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("install trigger capture: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	targets, err := resolve(ctx, tx, tables, opts)
	if err != nil {
		return fmt.Errorf("install trigger capture: %w", err)
	}
	if err := checkPrivileges(ctx, tx, targets); err != nil {
		return fmt.Errorf("install trigger capture: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey); err != nil {
		return fmt.Errorf("install trigger capture: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("install trigger capture: create %s: %w", logTable, privilegeHint(err))
	}
	id, err := randomID()
	if err != nil {
		return fmt.Errorf("install trigger capture: %w", err)
	}
	if _, err := tx.Exec(ctx, sourceIDSQL, int64(id)); err != nil {
		return fmt.Errorf("install trigger capture: store %s: %w", idTable, privilegeHint(err))
	}
	for _, t := range targets {
		stmts, err := triggersSQL(ctx, tx, t, opts)
		if err != nil {
			return fmt.Errorf("install trigger capture: %w", err)
		}
		if _, err := tx.Exec(ctx, functionSQL(t, opts)); err != nil {
			return fmt.Errorf("install trigger capture: create trigger function for %s: %w", t, privilegeHint(err))
		}
		if _, err := tx.Exec(ctx, stmts); err != nil {
			return fmt.Errorf("install trigger capture: create triggers on %s: %w", t, privilegeHint(err))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("install trigger capture: commit: %w", err)
	}
	return nil
}

// Uninstall drops every cdcd trigger, the trigger functions, the change log
// (with any changes not yet read) and schema cdcd, in one transaction. It
// does nothing when nothing is installed. The triggers go with their
// functions (DROP FUNCTION ... CASCADE), which the installing role may do
// without owning the tables. Schema cdcd is dropped only if nothing else is
// in it.
func Uninstall(ctx context.Context, conn Conn) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("uninstall trigger capture: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rows, err := tx.Query(ctx, `SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = 'cdcd' AND p.proname LIKE 'capture\_%'`)
	if err != nil {
		return fmt.Errorf("uninstall trigger capture: list functions: %w", err)
	}
	funcs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("uninstall trigger capture: list functions: %w", err)
	}
	var drops []string
	for _, fn := range funcs {
		drops = append(drops, "DROP FUNCTION "+pgx.Identifier{schemaName, fn}.Sanitize()+"() CASCADE")
	}
	drops = append(drops,
		"DROP TABLE IF EXISTS "+logTable,
		"DROP TABLE IF EXISTS "+idTable,
		"DROP SEQUENCE IF EXISTS "+logSequence,
		"DROP SCHEMA IF EXISTS "+schemaName)
	for _, d := range drops {
		if _, err := tx.Exec(ctx, d); err != nil {
			return fmt.Errorf("uninstall trigger capture: %s: %w", d, privilegeHint(err))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("uninstall trigger capture: commit: %w", err)
	}
	return nil
}

// resolve looks the tables up and picks the key each trigger projects.
func resolve(ctx context.Context, q Conn, tables []Table, opts Options) ([]target, error) {
	var out []target
	var keyless []string
	for _, tb := range tables {
		t := target{Table: tb}
		var ident string
		var relkind string
		var pk, idx []string
		err := q.QueryRow(ctx, `
			SELECT c.oid, c.relreplident::text, c.relkind::text,
			  ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped),
			  coalesce(ARRAY(SELECT a.attname::text FROM pg_index i JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o) ON true
			     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
			     WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.o), '{}'),
			  coalesce(ARRAY(SELECT a.attname::text FROM pg_index i JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o) ON true
			     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
			     WHERE i.indrelid = c.oid AND i.indisreplident ORDER BY k.o), '{}')
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2`, tb.Schema, tb.Name).Scan(&t.oid, &ident, &relkind, &t.cols, &pk, &idx)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("table %s does not exist", tb)
		}
		if err != nil {
			return nil, fmt.Errorf("look up table %s: %w", tb, err)
		}
		if relkind != "r" && relkind != "p" {
			return nil, fmt.Errorf("%s is not a table (relkind %q)", tb, relkind)
		}
		t.ident = ident[0]
		t.key = pk
		if t.ident == 'i' && len(idx) > 0 {
			t.key = idx
		}
		if len(t.key) == 0 && !opts.AllowKeyless {
			keyless = append(keyless, tb.String())
		}
		out = append(out, t)
	}
	if len(keyless) > 0 {
		return nil, fmt.Errorf("%w: %s: add a primary key (or a unique index and REPLICA IDENTITY USING INDEX), "+
			"or allow key-less tables to capture them with whole old rows", ErrNoKey, strings.Join(keyless, ", "))
	}
	return out, nil
}

// checkPrivileges reports every missing privilege at once, before anything
// is created.
func checkPrivileges(ctx context.Context, q Conn, targets []target) error {
	var missing []string
	var user, db string
	var canCreate, schemaExists, schemaCreate bool
	err := q.QueryRow(ctx, `SELECT current_user, current_database(),
		has_database_privilege(current_database(), 'CREATE'),
		EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'cdcd'),
		coalesce((SELECT has_schema_privilege(oid, 'CREATE') FROM pg_namespace WHERE nspname = 'cdcd'), false)`).
		Scan(&user, &db, &canCreate, &schemaExists, &schemaCreate)
	if err != nil {
		return fmt.Errorf("check privileges: %w", err)
	}
	role := pgx.Identifier{user}.Sanitize()
	if !schemaExists && !canCreate {
		missing = append(missing, fmt.Sprintf("CREATE on database %s (GRANT CREATE ON DATABASE %s TO %s)", db, pgx.Identifier{db}.Sanitize(), role))
	}
	if schemaExists && !schemaCreate {
		missing = append(missing, fmt.Sprintf("CREATE on schema cdcd (GRANT CREATE ON SCHEMA cdcd TO %s, or let %s own it)", role, role))
	}
	for _, t := range targets {
		var trig, usage bool
		if err := q.QueryRow(ctx, `SELECT has_table_privilege($1::oid, 'TRIGGER'),
			has_schema_privilege((SELECT relnamespace FROM pg_class WHERE oid = $1::oid), 'USAGE')`, t.oid).Scan(&trig, &usage); err != nil {
			return fmt.Errorf("check privileges on %s: %w", t, err)
		}
		if !usage {
			missing = append(missing, fmt.Sprintf("USAGE on schema %s (GRANT USAGE ON SCHEMA %s TO %s)", t.Schema, pgx.Identifier{t.Schema}.Sanitize(), role))
		}
		if !trig {
			missing = append(missing, fmt.Sprintf("TRIGGER on table %s (GRANT TRIGGER ON %s TO %s)", t, t, role))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: role %s lacks %s", ErrPrivilege, user, strings.Join(missing, "; "))
	}
	return nil
}

// privilegeHint marks an insufficient_privilege error from the server with
// ErrPrivilege (for what the pre-check cannot see, such as ownership).
func privilegeHint(err error) error {
	if pgCode(err) == codeInsufficientPrivil {
		return fmt.Errorf("%w: %w", ErrPrivilege, err)
	}
	return err
}

// funcName is the trigger function of a table: by OID, since names can be
// 63 bytes long and change with a rename.
func funcName(t target) string {
	return pgx.Identifier{schemaName, fmt.Sprintf("%s%d", funcPrefix, t.oid)}.Sanitize()
}

// functionSQL is the CREATE FUNCTION of a table's trigger function. The
// statement-level variant reads the transition tables new_rows and
// old_rows; the row-level one NEW and OLD.
func functionSQL(t target, opts Options) string {
	natts := fmt.Sprintf("(SELECT relnatts FROM pg_class WHERE oid = %d)", t.oid)
	full := t.ident == 'f' || len(t.key) == 0
	// keyOf projects the key columns of the row expression r as a record.
	keyOf := func(r string) string {
		cols := make([]string, len(t.key))
		for i, k := range t.key {
			cols[i] = r + "." + pgx.Identifier{k}.Sanitize()
		}
		return "ROW(" + strings.Join(cols, ", ") + ")::text"
	}
	ins := "INSERT INTO cdcd.change_log (relid, natts, op, old_row, new_row) "
	var body string
	if opts.RowTriggers {
		oldUpd, oldDel := "OLD::text", "OLD::text"
		if !full {
			oldUpd = fmt.Sprintf("CASE WHEN %s IS DISTINCT FROM %s THEN %s END", keyOf("OLD"), keyOf("NEW"), keyOf("OLD"))
			oldDel = keyOf("OLD")
		}
		body = fmt.Sprintf(`
	IF TG_OP = 'INSERT' THEN
		%[1]s VALUES (%[2]d, %[3]s, 'I', NULL, NEW::text);
	ELSIF TG_OP = 'UPDATE' THEN
		%[1]s VALUES (%[2]d, %[3]s, 'U', %[4]s, NEW::text);
	ELSIF TG_OP = 'DELETE' THEN
		%[1]s VALUES (%[2]d, %[3]s, 'D', %[5]s, NULL);
	ELSE
		%[1]s VALUES (%[2]d, %[3]s, 'T', NULL, NULL);
	END IF;`, ins, t.oid, natts, oldUpd, oldDel)
	} else {
		// o and n are the transition tables' rows, r the whole row in the
		// numbered subqueries; the aliases avoid the table's column names.
		o, n, r := t.alias("cdcd_o"), t.alias("cdcd_n"), t.alias("cdcd_r")
		oldUpd, oldDel := o+"."+r+"::text", o+"::text"
		if !full {
			oldUpd = fmt.Sprintf("CASE WHEN %s IS DISTINCT FROM %s THEN %s END", keyOf("("+o+"."+r+")"), keyOf("("+n+"."+r+")"), keyOf("("+o+"."+r+")"))
			oldDel = keyOf(o)
		}
		body = fmt.Sprintf(`
	IF TG_OP = 'INSERT' THEN
		%[1]s SELECT %[2]d, %[3]s, 'I', NULL, %[7]s::text FROM new_rows %[7]s;
	ELSIF TG_OP = 'UPDATE' THEN
		-- The transition tables hold one tuple each per updated row, in the
		-- same order: pair them by position. A single-row update (the
		-- OLTP case) needs no numbering.
		IF (SELECT count(*) FROM (SELECT FROM new_rows LIMIT 2) two) = 1 THEN
			%[1]s SELECT %[2]d, %[3]s, 'U', %[4]s, %[7]s.%[8]s::text
			FROM (SELECT %[8]s FROM old_rows %[8]s) %[6]s, (SELECT %[8]s FROM new_rows %[8]s) %[7]s;
		ELSE
			%[1]s SELECT %[2]d, %[3]s, 'U', %[4]s, %[7]s.%[8]s::text
			FROM (SELECT row_number() OVER () AS rn, %[8]s FROM old_rows %[8]s) %[6]s
			JOIN (SELECT row_number() OVER () AS rn, %[8]s FROM new_rows %[8]s) %[7]s USING (rn);
		END IF;
	ELSIF TG_OP = 'DELETE' THEN
		%[1]s SELECT %[2]d, %[3]s, 'D', %[5]s, NULL FROM old_rows %[6]s;
	ELSE
		%[1]s VALUES (%[2]d, %[3]s, 'T', NULL, NULL);
	END IF;`, ins, t.oid, natts, oldUpd, oldDel, o, n, r)
	}
	return fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
 %s
AS $cdcd$
BEGIN -- generated by cdcd Install
%s
	RETURN NULL;
END
$cdcd$`, funcName(t), pinned, body)
}

// triggersSQL returns the statements creating the triggers of a table
// that are missing or differ from what opts asks for. Triggers already
// right are kept: dropping a trigger needs ownership of the table, while
// creating one needs only the TRIGGER privilege. Wrong ones go with their
// function (DROP FUNCTION ... CASCADE, which the function's owner may do;
// Install runs it before CREATE OR REPLACE FUNCTION) or, for a trigger of
// that name on another function, by DROP TRIGGER.
func triggersSQL(ctx context.Context, q Conn, t target, opts Options) (string, error) {
	fn := funcName(t)
	tbl := t.String()
	rows, err := q.Query(ctx, `SELECT t.tgname::text, (t.tgtype & 1) = 1, p.proname::text = $2 AND n.nspname = 'cdcd'
		FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE t.tgrelid = $1 AND t.tgname = ANY($3)`, t.oid, fmt.Sprintf("%s%d", funcPrefix, t.oid), strings.Split(triggerNames, ", "))
	if err != nil {
		return "", fmt.Errorf("list triggers on %s: %w", t, err)
	}
	type existing struct{ row, ours bool }
	have := map[string]existing{}
	for rows.Next() {
		var name string
		var e existing
		if err := rows.Scan(&name, &e.row, &e.ours); err != nil {
			return "", fmt.Errorf("list triggers on %s: %w", t, err)
		}
		have[name] = e
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("list triggers on %s: %w", t, err)
	}
	refOld, refNew, refBoth := "REFERENCING OLD TABLE AS old_rows ", "REFERENCING NEW TABLE AS new_rows ",
		"REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
	if opts.RowTriggers {
		refOld, refNew, refBoth = "", "", ""
	}
	want := []struct {
		name, event, ref string
		row              bool
	}{
		{"cdcd_insert", "INSERT", refNew, opts.RowTriggers},
		{"cdcd_update", "UPDATE", refBoth, opts.RowTriggers},
		{"cdcd_delete", "DELETE", refOld, opts.RowTriggers},
		{"cdcd_truncate", "TRUNCATE", "", false},
	}
	var drops strings.Builder
	var missing []int // indexes into want
	dropFunc := false
	for i, w := range want {
		e, ok := have[w.name]
		switch {
		case ok && e.ours && e.row == w.row:
			continue
		case ok && e.ours:
			dropFunc = true
		case ok:
			fmt.Fprintf(&drops, "DROP TRIGGER %s ON %s;\n", w.name, tbl)
		}
		missing = append(missing, i)
	}
	if dropFunc {
		// Every trigger on the function goes with it: create all four.
		fmt.Fprintf(&drops, "DROP FUNCTION %s() CASCADE;\n", fn)
		missing = []int{0, 1, 2, 3}
	}
	var create strings.Builder
	for _, i := range missing {
		w := want[i]
		lvl := "STATEMENT"
		if w.row {
			lvl = "ROW"
		}
		fmt.Fprintf(&create, "CREATE TRIGGER %s AFTER %s ON %s %sFOR EACH %s EXECUTE FUNCTION %s();\n", w.name, w.event, tbl, w.ref, lvl, fn)
	}
	// The drops must run before CREATE OR REPLACE FUNCTION: run them now.
	if drops.Len() > 0 {
		if _, err := q.Exec(ctx, drops.String()); err != nil {
			return "", fmt.Errorf("replace triggers on %s: %w", t, privilegeHint(err))
		}
	}
	return create.String(), nil
}

// randomID is a new change log's identity: 64 random bits, never 0 (0 means
// "unknown" in source.Identity).
func randomID() (uint64, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("draw source id: %w", err)
		}
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 {
			return id, nil
		}
	}
}

// SystemID returns the identity of the installed change log, the random id
// Install stored in cdcd.source_id: stable across reinstalls, new after
// Uninstall (whose change log, and so any trail's continuity, is gone).
// It returns ErrNotInstalled when nothing, or an install older than the
// source id, is there.
func SystemID(ctx context.Context, conn Conn) (uint64, error) {
	var id int64
	err := conn.QueryRow(ctx, `SELECT id FROM cdcd.source_id`).Scan(&id)
	switch {
	case errors.Is(err, pgx.ErrNoRows) || pgCode(err) == codeUndefinedTable || pgCode(err) == codeInvalidSchema:
		return 0, fmt.Errorf("read source id: %w: table %s is missing or empty: run %s", ErrNotInstalled, idTable, remedy)
	case err != nil:
		return 0, fmt.Errorf("read source id: %w", err)
	}
	return uint64(id), nil
}
