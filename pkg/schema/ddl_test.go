package schema

import "testing"

// TestKeySortKB: the primary key build gets memory for an in-memory sort
// of its estimated rows, between 256MB and 1GB.
func TestKeySortKB(t *testing.T) {
	table := func(rows int64, oids ...uint32) *Table {
		t := &Table{Rows: rows}
		for i, oid := range oids {
			name := string(rune('a' + i))
			t.Columns = append(t.Columns, Column{Name: name, TypeOID: oid})
			t.PrimaryKey = append(t.PrimaryKey, name)
		}
		return t
	}
	for _, c := range []struct {
		name string
		t    *Table
		want int64
	}{
		{"small table: the floor", table(1000, 23), 256 << 10},
		{"unknown size: the floor", table(-1, 23), 256 << 10},
		{"5M-row int4 key", table(5_000_000, 23), 5_000_000 * 56 * 2 / 1024},
		{"5M-row (text, int8) key", table(5_000_000, 25, 20), 5_000_000 * 88 * 2 / 1024},
		{"100M rows: the cap", table(100_000_000, 20), 1 << 20},
	} {
		if got := keySortKB(c.t); got != c.want {
			t.Errorf("%s: keySortKB = %d kB, want %d", c.name, got, c.want)
		}
	}
}
