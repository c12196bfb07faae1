package schema

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Targets that speak PostgreSQL but create tables their own way.
//
// Aurora DSQL: no CREATE TYPE or DOMAIN, sequences, foreign keys, triggers
// or partitions; the primary key only in CREATE TABLE (never added later);
// one DDL statement per transaction; indexes only with CREATE INDEX ASYNC;
// a numeric column without precision silently becomes numeric(18,6); and
// a subset of the column types. DSQLTable maps each column by the rule of
// DSQLType and DSQLStatements returns one statement per transaction.
//
// Citus: tables are created like on PostgreSQL, then made distributed
// (create_distributed_table on a primary-key column, in a colocation
// group) or reference tables; see CitusStatements.

// DSQLNumeric is the type an unconstrained numeric column gets on DSQL,
// which would otherwise make it numeric(18,6) and round its values.
const DSQLNumeric = "numeric(1000,500)"

// dsqlTypes are the column types DSQL stores, by format_type(oid, -1).
var dsqlTypes = map[string]bool{
	"smallint": true, "integer": true, "bigint": true, "real": true, "double precision": true, "numeric": true,
	"character": true, "character varying": true, "bpchar": true, `"char"`: false, "text": true, "bytea": true,
	"boolean": true, "date": true, "time without time zone": true, "time with time zone": true,
	"timestamp without time zone": true, "timestamp with time zone": true, "interval": true, "uuid": true,
}

// DSQLType returns the type column c gets on DSQL, and a note saying how
// it differs from the source's ("" when it is the same). The rule:
//   - types DSQL stores keep their type and modifier;
//   - numeric without precision becomes DSQLNumeric;
//   - a domain becomes its base type, mapped by this rule (its
//     constraints are not kept);
//   - everything else — arrays, json, jsonb, enums, inet, cidr, macaddr,
//     money, bit strings, xml, tsvector, geometric, range and composite
//     types — becomes text, holding PostgreSQL's text form of the value
//     (what a cast to text gives, e.g. {1,2} for an array).
func DSQLType(c Column, types []*Type) (typ, note string) {
	for _, ty := range types {
		if ty.Kind == 'd' && (pgx.Identifier{ty.Name.Schema, ty.Name.Name}.Sanitize()) == c.Type {
			typ, _ := DSQLType(Column{Type: ty.Base, BaseType: stripModifier(ty.Base)}, nil)
			return typ, "domain " + c.Type + " as " + typ
		}
	}
	switch {
	case c.BaseType == "numeric" && !strings.Contains(c.Type, "("):
		return DSQLNumeric, "numeric without precision as " + DSQLNumeric
	case dsqlTypes[c.BaseType] && !strings.HasSuffix(c.Type, "[]"):
		return c.Type, ""
	}
	return "text", c.Type + " as text"
}

// stripModifier removes a type modifier: "timestamp(3) with time zone" →
// "timestamp with time zone", as format_type(oid, -1) names the type.
func stripModifier(typ string) string {
	i := strings.IndexByte(typ, '(')
	j := strings.IndexByte(typ, ')')
	if i < 0 || j < i {
		return typ
	}
	return strings.Join(strings.Fields(typ[:i]+" "+typ[j+1:]), " ")
}

// dsqlBase is what format_type(oid, -1) says of a column DSQLType made.
func dsqlBase(c Column, types []*Type) string {
	typ, note := DSQLType(c, types)
	if note == "" {
		return c.BaseType // the source's own type
	}
	if typ = stripModifier(typ); typ == "character" {
		return "bpchar" // format_type(bpchar, -1)
	}
	return typ
}

// DSQLStatements returns the DDL that creates t on DSQL, one statement per
// transaction: the schema (IF NOT EXISTS), then the table with its primary
// key inline. Constant defaults are kept (Read drops sequence and other
// non-constant ones), except on columns mapped to text.
func DSQLStatements(t *Table) []string {
	var out []string
	if t.Target.Schema != "public" {
		out = append(out, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{t.Target.Schema}.Sanitize())
	}
	var b strings.Builder
	b.WriteString("CREATE TABLE ")
	b.WriteString(pgx.Identifier{t.Target.Schema, t.Target.Name}.Sanitize())
	b.WriteString(" (")
	for i, c := range t.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		typ, note := DSQLType(c, t.Types)
		b.WriteString(pgx.Identifier{c.Name}.Sanitize())
		b.WriteString(" ")
		b.WriteString(typ)
		// A default of a type mapped to text may name a type DSQL lacks
		// ('new'::mood): it is left out.
		if c.Default != "" && (note == "" || typ != "text") {
			b.WriteString(" DEFAULT ")
			b.WriteString(c.Default)
		}
		if c.NotNull {
			b.WriteString(" NOT NULL")
		}
	}
	if len(t.PrimaryKey) > 0 {
		b.WriteString(", PRIMARY KEY (")
		b.WriteString(quoteList(t.PrimaryKey))
		b.WriteString(")")
	}
	b.WriteString(")")
	return append(out, b.String())
}

// CitusPlacement says how one table is distributed on Citus.
type CitusPlacement struct {
	// Reference makes a reference table (a copy on every node).
	Reference bool
	// Column is the distribution column of a distributed table.
	Column string
	// ColocateWith is the table to colocate with; "" is Citus's default
	// group.
	ColocateWith string
}

// CitusStatements returns the statements that distribute the created table
// t (after its CREATE TABLE, which is PostgreSQL's). The distribution
// column must be a primary-key column: Citus enforces uniqueness only on
// keys that include it, and apply finds rows by the key.
func CitusStatements(t *Table, p CitusPlacement) ([]string, error) {
	name := quoteLiteral(pgx.Identifier{t.Target.Schema, t.Target.Name}.Sanitize())
	if p.Reference {
		return []string{"SELECT create_reference_table(" + name + ")"}, nil
	}
	if len(t.PrimaryKey) == 0 {
		return nil, fmt.Errorf("%s has no primary key: Citus distributes a table on a key column (make it a reference table, or add a key on the source)", t.Target)
	}
	col := p.Column
	if col == "" {
		col = t.PrimaryKey[0]
	}
	if !contains(t.PrimaryKey, col) {
		return nil, fmt.Errorf("%s: distribution column %s is not in the primary key (%s), as Citus requires: choose one of those columns",
			t.Target, col, strings.Join(t.PrimaryKey, ", "))
	}
	colocate := "default"
	if p.ColocateWith != "" {
		colocate = p.ColocateWith
	}
	return []string{"SELECT create_distributed_table(" + name + ", " + quoteLiteral(col) + ", colocate_with => " + quoteLiteral(colocate) + ")"}, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// EnsureDSQL is Ensure for Aurora DSQL: it checks existing tables against
// the mapped types, and creates missing ones with DSQLStatements, each
// statement in its own transaction. Primary keys are never deferred.
func EnsureDSQL(ctx context.Context, conn *pgx.Conn, tables []*Table, create bool) ([]string, error) {
	var problems, created []string
	for _, t := range tables {
		cols, exists, err := targetColumns(ctx, conn, t.Target)
		if err != nil {
			return nil, err
		}
		if exists {
			for _, c := range t.Columns {
				want := dsqlBase(c, t.Types)
				tc, ok := cols[c.Name]
				switch {
				case !ok:
					problems = append(problems, fmt.Sprintf("%s has no column %s (%s)", t.Target, c.Name, want))
				case tc.typ != want:
					problems = append(problems, fmt.Sprintf("%s.%s is %s, DSQL's rule for the source's %s makes it %s", t.Target, c.Name, tc.typ, c.Type, want))
				}
			}
			continue
		}
		if !create {
			problems = append(problems, fmt.Sprintf("%s does not exist (source %s)", t.Target, t.Source))
			continue
		}
		for _, stmt := range DSQLStatements(t) {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				return created, fmt.Errorf("create target table %s: %w", t.Target, err)
			}
		}
		created = append(created, t.Target.String())
	}
	if len(problems) > 0 {
		return created, fmt.Errorf("target tables do not match the source: %s; fix or drop those target tables (schema.create: true makes missing ones)",
			strings.Join(problems, "; "))
	}
	return created, nil
}

// EnsureCitus is Ensure for Citus: each table it creates (with its
// primary key, never deferred) is then distributed or made a reference
// table as placement says; existing tables are checked like on PostgreSQL.
func EnsureCitus(ctx context.Context, conn *pgx.Conn, tables []*Table, create, deferKeys bool, placement func(*Table) CitusPlacement) ([]string, error) {
	var created []string
	for _, t := range tables {
		_, exists, err := targetColumns(ctx, conn, t.Target)
		if err != nil {
			return nil, err
		}
		if exists || !create {
			continue
		}
		stmts, err := CitusStatements(t, placement(t))
		if err != nil {
			return created, err
		}
		// The primary key must exist before distribution when the table
		// is distributed by it; Citus then creates it on every shard.
		if _, err := Ensure(ctx, conn, []*Table{t}, true, false); err != nil {
			return created, err
		}
		for _, stmt := range stmts {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				return created, fmt.Errorf("distribute target table %s: %w", t.Target, err)
			}
		}
		created = append(created, t.Target.String())
	}
	// Existing tables (and the ones just made) are checked like on
	// PostgreSQL.
	if _, err := Ensure(ctx, conn, tables, create, deferKeys); err != nil {
		return created, err
	}
	return created, nil
}
