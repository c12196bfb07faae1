package schema

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Querier is a connection or transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// firstNormalOID is FirstNormalObjectId: OIDs below it are built in.
const firstNormalOID = 16384

const columnsQuery = `
SELECT a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod), format_type(a.atttypid, -1),
       a.attnotnull, coalesce(pg_get_expr(d.adbin, d.adrelid), ''),
       t.typtype, tn.nspname, t.typname,
       coalesce(et.oid, 0), coalesce(et.typtype, ''), coalesce(etn.nspname, ''), coalesce(et.typname, ''),
       coalesce(bt.oid, 0), coalesce(bt.typtype, '')
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
LEFT JOIN pg_catalog.pg_type et ON t.typcategory = 'A' AND et.oid = t.typelem
LEFT JOIN pg_catalog.pg_namespace etn ON etn.oid = et.typnamespace
LEFT JOIN pg_catalog.pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum`

const pkQuery = `
SELECT a.attname
FROM pg_catalog.pg_index i
JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1 AND i.indisprimary
ORDER BY k.ord`

// Read reads the definition of the source table with the given OID. The
// target is named like the source; Map changes that.
func Read(ctx context.Context, q Querier, oid uint32) (*Table, error) {
	t := &Table{OID: oid}
	if err := q.QueryRow(ctx, `SELECT n.nspname, c.relname, c.reltuples::bigint FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, oid).
		Scan(&t.Source.Schema, &t.Source.Name, &t.Rows); err != nil {
		return nil, fmt.Errorf("read table %d from the source catalog: %w", oid, err)
	}
	t.Target = t.Source
	rows, err := q.Query(ctx, columnsQuery, oid)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", t.Source, err)
	}
	var userTypes []uint32
	for rows.Next() {
		var (
			c                                         Column
			def, typtype, nsp, typname                string
			elemOID, baseOID                          uint32
			elemType, elemNsp, elemName, baseTypetype string
		)
		if err := rows.Scan(&c.Source, &c.TypeOID, &c.Type, &c.BaseType, &c.NotNull, &def,
			&typtype, &nsp, &typname, &elemOID, &elemType, &elemNsp, &elemName, &baseOID, &baseTypetype); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read columns of %s: %w", t.Source, err)
		}
		c.Name = c.Source
		c.Default = constantDefault(def)
		c.BaseType = unqualify(c.BaseType)
		c.BinarySafe = true
		switch {
		case c.TypeOID < firstNormalOID:
		case typtype == "e" || typtype == "d":
			c.Type = pgx.Identifier{nsp, typname}.Sanitize()
			userTypes = append(userTypes, c.TypeOID)
			c.BinarySafe = typtype == "e" || baseOID < firstNormalOID || baseTypetype == "e"
		case elemOID != 0 && (elemType == "e" || elemType == "d"):
			c.Type = pgx.Identifier{elemNsp, elemName}.Sanitize() + "[]"
			userTypes = append(userTypes, elemOID)
			c.BinarySafe = false // array_recv checks the element type OID
		default:
			c.BinarySafe = false // composite, range, extension types: text
		}
		t.Columns = append(t.Columns, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", t.Source, err)
	}
	pk, err := q.Query(ctx, pkQuery, oid)
	if err != nil {
		return nil, fmt.Errorf("read primary key of %s: %w", t.Source, err)
	}
	for pk.Next() {
		var name string
		if err := pk.Scan(&name); err != nil {
			pk.Close()
			return nil, err
		}
		t.PrimaryKey = append(t.PrimaryKey, name)
	}
	if err := pk.Err(); err != nil {
		return nil, fmt.Errorf("read primary key of %s: %w", t.Source, err)
	}
	seen := map[uint32]bool{}
	for _, oid := range userTypes {
		if err := readType(ctx, q, oid, seen, &t.Types); err != nil {
			return nil, fmt.Errorf("read types of %s: %w", t.Source, err)
		}
	}
	return t, nil
}

// readType appends the enum or domain type oid after the user types it
// depends on.
func readType(ctx context.Context, q Querier, oid uint32, seen map[uint32]bool, out *[]*Type) error {
	if seen[oid] {
		return nil
	}
	seen[oid] = true
	var (
		ty       Type
		kind     string
		baseOID  uint32
		def      *string
		labels   []string
		checks   []string
		baseElem uint32
	)
	err := q.QueryRow(ctx, `
SELECT n.nspname, t.typname, t.typtype, t.typnotnull, t.typdefault, t.typbasetype,
       CASE WHEN t.typbasetype <> 0 THEN format_type(t.typbasetype, t.typtypmod) ELSE '' END,
       coalesce(bt.typelem, 0),
       array(SELECT e.enumlabel::text FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder),
       array(SELECT pg_get_constraintdef(c.oid) FROM pg_catalog.pg_constraint c WHERE c.contypid = t.oid AND c.contype = 'c' ORDER BY c.conname)
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_catalog.pg_type bt ON bt.oid = t.typbasetype
WHERE t.oid = $1`, oid).Scan(&ty.Name.Schema, &ty.Name.Name, &kind, &ty.NotNull, &def, &baseOID, &ty.Base, &baseElem, &labels, &checks)
	if err != nil {
		return fmt.Errorf("type %d: %w", oid, err)
	}
	ty.Kind = kind[0]
	switch ty.Kind {
	case 'e':
		ty.Labels = labels
	case 'd':
		ty.Checks = checks
		if def != nil {
			ty.Default = constantDefault(*def)
		}
		if baseOID >= firstNormalOID {
			// A domain over a user type: that type first, named in full.
			var nsp, name, tt string
			if err := q.QueryRow(ctx, `SELECT n.nspname, t.typname, t.typtype FROM pg_catalog.pg_type t
				JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1`, baseOID).Scan(&nsp, &name, &tt); err != nil {
				return fmt.Errorf("type %d: %w", baseOID, err)
			}
			if tt != "e" && tt != "d" {
				return fmt.Errorf("domain %s is over type %s.%s, which schema creation does not support: create it on the target first", ty.Name, nsp, name)
			}
			if err := readType(ctx, q, baseOID, seen, out); err != nil {
				return err
			}
			ty.Base = pgx.Identifier{nsp, name}.Sanitize()
		}
	default:
		return fmt.Errorf("type %s is neither an enum nor a domain", ty.Name)
	}
	*out = append(*out, &ty)
	return nil
}

// constantLiteral matches what pg_get_expr prints for a constant: a number,
// a quoted string, true/false or NULL, optionally cast, optionally in
// parentheses (negative numbers).
var constantLiteral = regexp.MustCompile(`^\(?(?:NULL|true|false|-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|'(?:[^']|'')*')\)?(?:::[a-zA-Z_][a-zA-Z0-9_ ."]*(?:\([0-9, ]+\))?(?:\[\])?)*$`)

// constantDefault returns def when it is a constant expression, else "".
// Defaults calling functions (nextval, now(), gen_random_uuid()) are left
// out: a sequence or function may not exist on the target, and the source
// always sends the value anyway.
func constantDefault(def string) string {
	def = strings.TrimSpace(def)
	if def == "" || !constantLiteral.MatchString(def) {
		return ""
	}
	return def
}

// Map returns a copy of t for the target name target, with the columns keep
// accepts under the names it returns. Primary-key columns must be kept.
func (t *Table) Map(target Name, keep func(col string) (string, bool)) (*Table, error) {
	m := *t
	m.Target = target
	m.Columns = nil
	names := map[string]string{}
	for _, c := range t.Columns {
		name, ok := keep(c.Source)
		if !ok {
			continue
		}
		c.Name = name
		names[c.Source] = name
		m.Columns = append(m.Columns, c)
	}
	m.PrimaryKey = nil
	for _, k := range t.PrimaryKey {
		name, ok := names[k]
		if !ok {
			return nil, fmt.Errorf("mapping of %s excludes primary-key column %s: keep every key column", t.Source, k)
		}
		m.PrimaryKey = append(m.PrimaryKey, name)
	}
	if len(m.Columns) == 0 {
		return nil, fmt.Errorf("mapping of %s excludes every column", t.Source)
	}
	return &m, nil
}
