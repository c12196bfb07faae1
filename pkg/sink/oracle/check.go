package oracle

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/dsn"
	"github.com/cdcd-io/cdcd/pkg/schema"
)

// Finding is one outcome of Check, for `cdcd check`.
type Finding struct {
	// Check is the aspect checked: client, connect, privileges,
	// checkpoint, tables.
	Check string
	// OK and Warn: passed, or a warning; neither is a failure.
	OK, Warn bool
	// Detail says what was found; Remedy how to fix a failure.
	Detail, Remedy string
}

// Check looks at an Oracle target without changing it: the Instant
// Client loads, the connection works, the checkpoint table is writable (or
// the user may create it), and every source table exists with every
// column, of a type its values can be written to, with the rights to
// write. timeout bounds the connection attempt.
func Check(ctx context.Context, cfg Config, tables []*schema.Table, timeout time.Duration) []Finding {
	if err := cfg.Validate(); err != nil {
		return []Finding{{Check: "config", Detail: err.Error(), Remedy: "fix the sink's settings"}}
	}
	db, desc, secret, err := openDB(cfg)
	if err != nil {
		return []Finding{{Check: "config", Detail: err.Error(), Remedy: `use user=… connectString="host:1521/service"`}}
	}
	defer db.Close()
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		if missingClient(err) {
			return []Finding{{Check: "client", Detail: "the Oracle Instant Client (libclntsh.so) is not installed or not found",
				Remedy: "install Oracle Instant Client 19c or later (basic or basic-light), then ldconfig its directory, put it in LD_LIBRARY_PATH, or set oracle.lib_dir"}}
		}
		return []Finding{{Check: "client", OK: true, Detail: "Oracle Instant Client loaded"},
			{Check: "connect", Detail: fmt.Sprintf("cannot connect to %s: %v", desc, dsn.RedactError(err, secret)),
				Remedy: "check the dsn (user, connectString, service name), the password, that the database runs and that its listener admits this host"}}
	}
	out := []Finding{{Check: "client", OK: true, Detail: "Oracle Instant Client loaded"}, {Check: "connect", OK: true, Detail: "connected to " + desc}}
	return append(out, CheckDB(ctx, cfg, db, tables)...)
}

// Queries of CheckDB.
const (
	currentUserSQL  = `SELECT USER, SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA') FROM dual`
	sessionPrivsSQL = `SELECT PRIVILEGE FROM SESSION_PRIVS`
	tablePrivsSQL   = `SELECT PRIVILEGE FROM ALL_TAB_PRIVS WHERE TABLE_SCHEMA = :1 AND TABLE_NAME = :2
  AND GRANTEE IN (SELECT USER FROM dual UNION ALL SELECT ROLE FROM SESSION_ROLES UNION ALL SELECT 'PUBLIC' FROM dual)`
)

// CheckDB is Check over an open connection (tests use a recording driver).
func CheckDB(ctx context.Context, cfg Config, db *sql.DB, tables []*schema.Table) []Finding {
	cfg = cfg.withDefaults()
	s := &Sink{cfg: cfg}
	var err error
	if cfg.Schema != "" {
		if s.schema, err = cfg.Case.ident(cfg.Schema); err != nil {
			return []Finding{{Check: "config", Detail: err.Error(), Remedy: "fix oracle.schema"}}
		}
	}
	var user, current string
	if err := db.QueryRowContext(ctx, currentUserSQL).Scan(&user, &current); err != nil {
		return []Finding{{Check: "privileges", Detail: "cannot read the session user: " + err.Error(), Remedy: "check the connection"}}
	}
	owner := s.schema
	if owner == "" {
		owner = current
	}
	privs, err := stringsOf(ctx, db, sessionPrivsSQL)
	if err != nil {
		return []Finding{{Check: "privileges", Detail: "cannot read SESSION_PRIVS: " + err.Error(), Remedy: "check the connection"}}
	}
	has := func(p string) bool { return privs[p] }
	var out []Finding

	// Checkpoint table.
	ck, err := cfg.Case.ident(cfg.CheckpointTable)
	if err != nil {
		return append(out, Finding{Check: "checkpoint", Detail: err.Error(), Remedy: "fix checkpoint_table"})
	}
	ckName := s.qualify(ck)
	ckCols, err := s.targetColumns(ctx, db, ck)
	switch {
	case err != nil:
		out = append(out, Finding{Check: "checkpoint", Detail: err.Error(), Remedy: "check the connection"})
	case ckCols != nil:
		if missing := missingRights(ctx, db, owner, user, ck, has, "SELECT", "INSERT", "UPDATE"); len(missing) > 0 {
			out = append(out, Finding{Check: "checkpoint", Detail: fmt.Sprintf("checkpoint table %s exists but the user lacks %s on it", ckName, strings.Join(missing, ", ")),
				Remedy: "GRANT SELECT, INSERT, UPDATE ON " + ckName + " TO " + user})
		} else {
			out = append(out, Finding{Check: "checkpoint", OK: true, Detail: "checkpoint table " + ckName + " is writable"})
		}
	case owner == user && (has("CREATE TABLE") || has("CREATE ANY TABLE")), owner != user && has("CREATE ANY TABLE"):
		out = append(out, Finding{Check: "checkpoint", OK: true, Detail: "checkpoint table " + ckName + " will be created (the user has CREATE TABLE; it also needs quota on its tablespace)"})
	default:
		out = append(out, Finding{Check: "checkpoint", Detail: "checkpoint table " + ckName + " does not exist and the user cannot create it",
			Remedy: "GRANT CREATE TABLE TO " + user + " (and quota), or create it as the DBA (DDL in pkg/sink/oracle/doc.go) and grant SELECT, INSERT, UPDATE"})
	}

	// Target tables: present, every source column present and writable
	// from its source type, and the rights to write.
	var missing, problems, rights []string
	for _, t := range tables {
		name, err := cfg.Case.ident(t.Target.Name)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		cols, err := s.targetColumns(ctx, db, name)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if cols == nil {
			missing = append(missing, s.qualify(name))
			continue
		}
		if _, err := newTable(cfg, s.qualify(name), relationOf(t), cols); err != nil {
			problems = append(problems, s.qualify(name)+": "+err.Error())
		}
		if m := missingRights(ctx, db, owner, user, name, has, "SELECT", "INSERT", "UPDATE", "DELETE"); len(m) > 0 {
			rights = append(rights, fmt.Sprintf("%s (%s)", s.qualify(name), strings.Join(m, ", ")))
		}
	}
	switch {
	case len(missing) > 0:
		out = append(out, Finding{Check: "tables", Detail: fmt.Sprintf("%d of %d source tables are missing on Oracle: %s", len(missing), len(tables), list(missing)),
			Remedy: "create them (the DDL cdcd would use: schema.create: true with a snapshot makes them)"})
	case len(problems) > 0:
		out = append(out, Finding{Check: "tables", Detail: "incompatible target tables: " + list(problems), Remedy: "add or retype the columns named"})
	default:
		out = append(out, Finding{Check: "tables", OK: true, Detail: fmt.Sprintf("all %d source tables exist on Oracle with compatible columns", len(tables))})
	}
	if len(missing) > 0 && len(problems) > 0 {
		out = append(out, Finding{Check: "tables", Detail: "incompatible target tables: " + list(problems), Remedy: "add or retype the columns named"})
	}
	if len(rights) > 0 {
		out = append(out, Finding{Check: "privileges", Detail: "the user cannot write to " + list(rights), Remedy: "GRANT SELECT, INSERT, UPDATE, DELETE ON each table TO " + user})
	} else {
		out = append(out, Finding{Check: "privileges", OK: true, Detail: "the user may write to every existing target table"})
	}
	return out
}

// missingRights returns the privileges among want the user lacks on
// owner.table: none when the user owns it or holds the ANY privileges.
func missingRights(ctx context.Context, db *sql.DB, owner, user, table string, has func(string) bool, want ...string) []string {
	if owner == user {
		return nil
	}
	granted, err := stringsOf(ctx, db, tablePrivsSQL, owner, table)
	if err != nil {
		return []string{"(cannot read ALL_TAB_PRIVS: " + err.Error() + ")"}
	}
	var missing []string
	for _, p := range want {
		if !granted[p] && !has(p+" ANY TABLE") && !(p == "SELECT" && granted["READ"]) {
			missing = append(missing, p)
		}
	}
	return missing
}

func stringsOf(ctx context.Context, db *sql.DB, query string, args ...any) (map[string]bool, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out[s] = true
	}
	return out, rows.Err()
}

// relationOf describes a source table as the relation its changes carry.
func relationOf(t *schema.Table) *change.Relation {
	rel := &change.Relation{Schema: t.Target.Schema, Name: t.Target.Name}
	for _, c := range t.Columns {
		rel.Columns = append(rel.Columns, change.Column{Name: c.Name, TypeOID: c.TypeOID, TypeName: c.BaseType})
	}
	for _, k := range t.PrimaryKey {
		if i := t.Column(k); i >= 0 {
			rel.PrimaryKey = append(rel.PrimaryKey, i)
		}
	}
	return rel
}

func list(items []string) string {
	if len(items) <= 5 {
		return strings.Join(items, "; ")
	}
	return strings.Join(items[:5], "; ") + fmt.Sprintf(" and %d more", len(items)-5)
}
