package oracle

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/cdcd-io/cdcd/pkg/schema"
)

// versionSQL reads the server's major version (19, 21, 23).
const versionSQL = `SELECT VERSION FROM PRODUCT_COMPONENT_VERSION WHERE PRODUCT LIKE 'Oracle%' AND ROWNUM = 1`

// serverMajor returns the Oracle server's major version.
func (s *Sink) serverMajor(ctx context.Context) (int, error) {
	var v string
	if err := s.conn.QueryRowContext(ctx, versionSQL).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading the server version: %w", err)
	}
	major, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return 0, fmt.Errorf("reading the server version: %q", v)
	}
	return n, nil
}

// TableDDL returns the CREATE TABLE statement for a source table on an
// Oracle server of major version major (19, 21, 23), under the case rule
// and in the given schema ("" for the current one). It is pure: the
// mapping is ddlType's.
func TableDDL(t *schema.Table, c Case, schemaName string, major int) (string, error) {
	if c == "" {
		c = CaseUpper
	}
	name, err := c.ident(t.Target.Name)
	if err != nil {
		return "", fmt.Errorf("table %s: %w", t.Target, err)
	}
	qualified := quote(name)
	if schemaName != "" {
		sn, err := c.ident(schemaName)
		if err != nil {
			return "", err
		}
		qualified = quote(sn) + "." + qualified
	}
	cols := make([]string, len(t.Columns))
	types := make([]string, len(t.Columns))
	notNull := make([]bool, len(t.Columns))
	for i, col := range t.Columns {
		n, err := c.ident(col.Name)
		if err != nil {
			return "", fmt.Errorf("table %s: column: %w", t.Target, err)
		}
		cols[i] = quote(n)
		types[i] = columnType(t, col, major)
		if slicesContains(t.PrimaryKey, col.Name) {
			types[i] = keyType(types[i])
		}
		notNull[i] = col.NotNull
	}
	pk := make([]string, len(t.PrimaryKey))
	for i, k := range t.PrimaryKey {
		n, err := c.ident(k)
		if err != nil {
			return "", err
		}
		pk[i] = quote(n)
	}
	return createTableSQL(qualified, cols, types, notNull, pk), nil
}

// EnsureTables checks that every table exists on Oracle with every source
// column, and with create makes the missing ones (with their primary key:
// deferKeys is ignored, as Oracle's DDL commits on its own and a snapshot
// into this sink runs through Apply). DDL runs outside any batch
// transaction.
func (s *Sink) EnsureTables(ctx context.Context, tables []*schema.Table, create, deferKeys bool) ([]string, error) {
	if s.tx != nil {
		return nil, s.errorf("creating tables: a transaction is open")
	}
	var (
		created, problems []string
		major             int
	)
	for _, t := range tables {
		name, err := s.cfg.Case.ident(t.Target.Name)
		if err != nil {
			return created, s.errorf("table %s: %w", t.Target, err)
		}
		cols, err := s.targetColumns(ctx, s.conn, name)
		if err != nil {
			return created, classify(s.errorf("%w", err))
		}
		if cols != nil {
			// Every source column must exist, with a type its values can
			// be written to.
			if _, err := newTable(s.cfg, s.qualify(name), relationOf(t), cols); err != nil {
				problems = append(problems, s.qualify(name)+" "+err.Error())
			}
			continue
		}
		if !create {
			problems = append(problems, s.qualify(name)+" does not exist")
			continue
		}
		if major == 0 {
			if major, err = s.serverMajor(ctx); err != nil {
				return created, classify(s.errorf("%w", err))
			}
		}
		ddl, err := TableDDL(t, s.cfg.Case, s.schema, major)
		if err != nil {
			return created, s.errorf("%w", err)
		}
		if _, err := s.conn.ExecContext(ctx, ddl); err != nil {
			return created, classify(s.errorf("creating table %s: %w", s.qualify(name), err))
		}
		s.log.Info("oracle sink: table created", "table", s.qualify(name))
		created = append(created, t.Target.String())
	}
	if len(problems) > 0 {
		return created, s.errorf("target tables: %s (create them, or set schema.create: true for missing tables)", strings.Join(problems, "; "))
	}
	return created, nil
}

// FinishTable does nothing: EnsureTables creates tables with their key.
func (s *Sink) FinishTable(context.Context, *schema.Table) error { return nil }

// keyType replaces a LOB type, which Oracle cannot index or compare, for a
// primary-key column: text keys become VARCHAR2(4000 BYTE), bytea keys
// RAW(2000); a longer key value is an error from Oracle naming the column.
func keyType(typ string) string {
	switch typ {
	case "CLOB", "JSON":
		return "VARCHAR2(4000 BYTE)"
	case "BLOB":
		return "RAW(2000)"
	}
	return typ
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
