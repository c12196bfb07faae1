// Package schema reads table definitions from a PostgreSQL source catalog
// and creates or checks them on a PostgreSQL target: schemas, tables,
// columns with their types, constant defaults, NOT NULL and the primary key,
// plus the user-defined enum and domain types those columns use.
//
// It is what `schema.create: true` does before a snapshot. Left out on
// purpose: indexes other than the primary key, unique and check constraints
// of tables (those of domains are kept), foreign keys, triggers, non-constant
// defaults (sequences, now()), generated columns, partitioning, collations.
// Migrate those with the application's own schema tooling.
package schema

import "strings"

// Name is a schema-qualified table or type name, unquoted.
type Name struct {
	Schema, Name string
}

func (n Name) String() string { return n.Schema + "." + n.Name }

// Table is one source table and its target.
type Table struct {
	// OID is the source table's pg_class OID.
	OID uint32
	// Source and Target name the table on each side.
	Source, Target Name
	// Columns are the copied columns in source attribute order (excluded
	// columns are gone, renamed ones carry their target name).
	Columns []Column
	// PrimaryKey holds the target names of the primary-key columns, in key
	// order; empty when the table has none.
	PrimaryKey []string
	// Types are the user-defined types the columns use, dependencies first.
	Types []*Type
	// Rows is the catalog's row estimate (reltuples; -1 when unknown).
	Rows int64
}

// Column is one column of a Table.
type Column struct {
	// Source is the column's name on the source; Name on the target.
	Source, Name string
	// TypeOID is the source type OID.
	TypeOID uint32
	// Type is the full SQL type with its modifier, schema-qualified when
	// user-defined: "character(100)", "public.mood", "public.mood[]".
	Type string
	// BaseType is the type without modifier as format_type(oid, -1) gives
	// it, unqualified: used to compare with an existing target column.
	BaseType string
	// NotNull is the column's NOT NULL.
	NotNull bool
	// Default is the column's default when it is a constant, else "".
	Default string
	// BinarySafe reports that COPY's binary format of this type carries no
	// server-specific OIDs (arrays and composites of user types do), so
	// binary COPY between two servers works.
	BinarySafe bool
}

// Type is a user-defined enum or domain type.
type Type struct {
	Name Name
	// Kind is 'e' (enum) or 'd' (domain).
	Kind byte
	// Labels are an enum's labels in sort order.
	Labels []string
	// Base is a domain's base type (SQL, with modifier); NotNull, Default
	// and Checks its constraints (CHECK (…) clauses).
	Base    string
	NotNull bool
	Default string
	Checks  []string
}

// Column returns the index of the column with target name name, or -1.
func (t *Table) Column(name string) int {
	for i, c := range t.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// BinarySafe reports whether every column is BinarySafe.
func (t *Table) BinarySafe() bool {
	for _, c := range t.Columns {
		if !c.BinarySafe {
			return false
		}
	}
	return true
}

// unqualify strips a schema prefix from a format_type name ("public.mood"
// → "mood", `"my schema"."t"` → `"t"`), keeping array brackets.
func unqualify(s string) string {
	// A qualified name has a dot outside quotes and parentheses.
	depth, quoted, cut := 0, false, -1
	for i, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
		case quoted:
		case r == '(':
			depth++
		case r == ')':
			depth--
		case r == '.' && depth == 0:
			cut = i
		}
	}
	if cut < 0 {
		return s
	}
	return strings.TrimSpace(s[cut+1:])
}
