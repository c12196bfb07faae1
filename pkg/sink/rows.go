package sink

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// Row helpers of the sinks that collapse a batch to one final action per
// key and write text values (postgres, oracle).

// KeyString returns a map key for row's key values (the columns keys
// index): each value's length and bytes, so that no two different keys
// encode alike. which ("old", "new") names the row in errors.
func KeyString(rel *change.Relation, keys []int, row change.Row, which string) (string, error) {
	var b []byte
	for _, k := range keys {
		if k >= len(row) {
			return "", fmt.Errorf("%s row of %s has %d columns, key column %d is missing", which, rel.QualifiedName(), len(row), k)
		}
		v := row[k]
		if v.Kind != change.ValueText {
			return "", fmt.Errorf("%s key column %s of %s is %s, want a text value", which, rel.Columns[k].Name, rel.QualifiedName(), v.Kind)
		}
		b = binary.AppendUvarint(b, uint64(len(v.Data)))
		b = append(b, v.Data...)
	}
	return string(b), nil
}

// CheckRow rejects what a text-value sink (kind names it in errors) cannot
// write: rows of the wrong width, binary values, absent values in a new
// row, and unchanged values in an insert. A delete passes: only its old
// key is used, which KeyString checks.
func CheckRow(kind string, rel *change.Relation, c *change.Change) error {
	if c.Op == change.OpDelete {
		return nil
	}
	if len(c.New) != len(rel.Columns) {
		return fmt.Errorf("%s on %s: new row has %d columns, the relation %d", c.Op, rel.QualifiedName(), len(c.New), len(rel.Columns))
	}
	for i, v := range c.New {
		switch v.Kind {
		case change.ValueNull, change.ValueText:
		case change.ValueUnchanged:
			if c.Op == change.OpInsert {
				return fmt.Errorf("insert on %s: column %s is an unchanged TOAST value", rel.QualifiedName(), rel.Columns[i].Name)
			}
		case change.ValueBinary:
			return fmt.Errorf("%s on %s: column %s is a binary value: the %s sink takes text values only (capture must not use the binary option)",
				c.Op, rel.QualifiedName(), rel.Columns[i].Name, kind)
		default:
			return fmt.Errorf("%s on %s: column %s is %s in the new row", c.Op, rel.QualifiedName(), rel.Columns[i].Name, v.Kind)
		}
	}
	if c.Old != nil && len(c.Old) != len(rel.Columns) {
		return fmt.Errorf("%s on %s: old row has %d columns, the relation %d", c.Op, rel.QualifiedName(), len(c.Old), len(rel.Columns))
	}
	return nil
}

// IsKey reports whether column i is one of keys.
func IsKey(keys []int, i int) bool {
	for _, k := range keys {
		if k == i {
			return true
		}
	}
	return false
}

// ColumnSignature returns a map key for a set of column positions: rows
// updating the same columns share one statement.
func ColumnSignature(cols []int) string {
	var b []byte
	for _, c := range cols {
		b = strconv.AppendInt(b, int64(c), 10)
		b = append(b, ',')
	}
	return string(b)
}

// HasUnchanged reports whether row holds an unchanged TOAST value.
func HasUnchanged(row change.Row) bool {
	for _, v := range row {
		if v.Kind == change.ValueUnchanged {
			return true
		}
	}
	return false
}

// CompleteRow returns a copy of row whose unchanged values are taken from
// from where it has a value (text or NULL); row itself is never modified,
// as it belongs to the batch.
func CompleteRow(row, from change.Row) change.Row {
	out := make(change.Row, len(row))
	copy(out, row)
	for i, v := range out {
		if v.Kind == change.ValueUnchanged && i < len(from) {
			if f := from[i]; f.Kind == change.ValueText || f.Kind == change.ValueNull {
				out[i] = f
			}
		}
	}
	return out
}
