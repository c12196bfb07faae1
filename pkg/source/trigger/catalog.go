package trigger

import (
	"context"
	"fmt"
	"slices"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// attr is one pg_attribute row of a captured table (attnum >= 1).
type attr struct {
	num       int16
	name      string
	typeOID   uint32
	typeName  string
	typeMod   int32
	dropped   bool
	generated bool
}

// table is what the catalog says about a captured table now.
type table struct {
	oid      uint32
	schema   string
	name     string
	ident    byte
	attrs    []attr  // ascending attnum, dropped ones included
	pk       []int16 // primary-key attnums in key order
	identKey []int16 // the key the trigger projects: pk, else the replica identity index

	// shapes caches the relation for each (natts, field count) seen.
	shapes map[shapeKey]*shape
}

type shapeKey struct {
	natts  int16
	fields int
}

// shape maps the fields of a row text written under one table layout onto
// a change.Relation.
type shape struct {
	rel *change.Relation
	// col[i] is the Relation column of field i, -1 for fields not delivered
	// (dropped or generated columns).
	col []int
	// key[j] is the Relation column of old-key field j.
	key []int
}

// fullOld reports whether the trigger function stores whole old rows for
// this table (REPLICA IDENTITY FULL or no key).
func (t *table) fullOld() bool { return t.ident == 'f' || len(t.identKey) == 0 }

// catalogSQL reads the tables with the given OIDs, one row per attribute.
const catalogSQL = `
SELECT c.oid, n.nspname, c.relname, c.relreplident::text,
       a.attnum, a.attname, a.atttypid, a.atttypmod, a.attisdropped, a.attgenerated <> '',
       CASE WHEN a.attisdropped THEN ''
            WHEN tn.nspname = 'pg_catalog' THEN ty.typname::text
            ELSE tn.nspname || '.' || ty.typname END,
       coalesce((SELECT i.indkey::int2[] FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), '{}'),
       coalesce((SELECT i.indkey::int2[] FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident), '{}')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
LEFT JOIN pg_type ty ON ty.oid = a.atttypid
LEFT JOIN pg_namespace tn ON tn.oid = ty.typnamespace
WHERE c.oid = ANY($1::oid[])
ORDER BY c.oid, a.attnum`

// loadTables reads the catalog entries of the given tables. Tables missing
// from the catalog (dropped since) are absent from the result.
func loadTables(ctx context.Context, q Conn, oids []uint32) (map[uint32]*table, error) {
	rows, err := q.Query(ctx, catalogSQL, oids)
	if err != nil {
		return nil, fmt.Errorf("read catalog of captured tables: %w", err)
	}
	defer rows.Close()
	out := make(map[uint32]*table, len(oids))
	for rows.Next() {
		var (
			oid          uint32
			schema, name string
			ident        string
			a            attr
			pk, idx      []int16
		)
		if err := rows.Scan(&oid, &schema, &name, &ident, &a.num, &a.name, &a.typeOID, &a.typeMod,
			&a.dropped, &a.generated, &a.typeName, &pk, &idx); err != nil {
			return nil, fmt.Errorf("read catalog of captured tables: %w", err)
		}
		t := out[oid]
		if t == nil {
			t = &table{oid: oid, schema: schema, name: name, pk: pk, shapes: map[shapeKey]*shape{}}
			if len(ident) == 1 {
				t.ident = ident[0]
			}
			t.identKey = pk
			if t.ident == 'i' && len(idx) > 0 {
				t.identKey = idx
			}
			out[oid] = t
		}
		t.attrs = append(t.attrs, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read catalog of captured tables: %w", err)
	}
	return out, nil
}

// sameLayout reports whether two catalog reads describe the same table
// layout, so cached shapes (and their Relation pointers) stay valid.
func sameLayout(a, b *table) bool {
	return a.schema == b.schema && a.name == b.name && a.ident == b.ident &&
		slices.Equal(a.attrs, b.attrs) && slices.Equal(a.pk, b.pk) && slices.Equal(a.identKey, b.identKey)
}

// shape returns the relation for rows written when the table had natts
// attributes (pg_class.relnatts) and whose row text has fields fields.
func (t *table) shape(natts int16, fields int) (*shape, error) {
	k := shapeKey{natts, fields}
	if s, ok := t.shapes[k]; ok {
		return s, nil
	}
	var present, all []attr
	for _, a := range t.attrs {
		if a.num > natts {
			break
		}
		all = append(all, a)
		if !a.dropped {
			present = append(present, a)
		}
	}
	var fieldAttrs []attr
	switch fields {
	case len(present):
		fieldAttrs = present
	case len(all):
		// Every attribute dropped since was still there when the row was
		// written: their fields are in the text, and skipped.
		fieldAttrs = all
	default:
		return nil, fmt.Errorf("rows of %s.%s were written with %d columns, but the catalog now has %d (%d including dropped ones): "+
			"a column was dropped while its changes waited in cdcd.change_log; drain cdcd before dropping columns of captured tables",
			t.schema, t.name, fields, len(present), len(all))
	}
	rel := &change.Relation{OID: t.oid, Schema: t.schema, Name: t.name, ReplicaIdentity: t.ident}
	s := &shape{rel: rel, col: make([]int, len(fieldAttrs))}
	byNum := map[int16]int{}
	for i, a := range fieldAttrs {
		s.col[i] = -1
		if a.dropped || a.generated {
			continue
		}
		s.col[i] = len(rel.Columns)
		byNum[a.num] = len(rel.Columns)
		rel.Columns = append(rel.Columns, change.Column{
			Name: a.name, TypeOID: a.typeOID, TypeName: a.typeName, TypeMod: a.typeMod,
			Key: t.ident == 'f' || slices.Contains(t.identKey, a.num),
		})
	}
	for _, n := range t.pk {
		if c, ok := byNum[n]; ok {
			rel.PrimaryKey = append(rel.PrimaryKey, c)
		}
	}
	for _, n := range t.identKey {
		c, ok := byNum[n]
		if !ok {
			c = -1
		}
		s.key = append(s.key, c)
	}
	t.shapes[k] = s
	return s, nil
}
