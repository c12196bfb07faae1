package schema

import (
	"context"
	"strconv"
)

// IntKeyBounds splits the key range of a table whose primary key is one
// int2, int4 or int8 column into parts ranges of equal width, by arithmetic
// over min..max: it returns the parts-1 inner bounds, each a one-column key
// in text form, ascending. ok is false when the key is not such a column
// (split some other way); ok with no bounds means one range (the table is
// empty, or its keys span fewer than parts values). from is the table as
// the query names it and col the quoted key column.
func IntKeyBounds(ctx context.Context, q Querier, t *Table, from, col string, parts int64) (bounds [][]string, ok bool, err error) {
	if len(t.PrimaryKey) != 1 {
		return nil, false, nil
	}
	switch t.Columns[t.Column(t.PrimaryKey[0])].TypeOID {
	case 20, 21, 23: // int8, int2, int4
	default:
		return nil, false, nil
	}
	var lo, hi *int64
	if err := q.QueryRow(ctx, "SELECT min("+col+")::int8, max("+col+")::int8 FROM ONLY "+from).Scan(&lo, &hi); err != nil {
		return nil, true, err
	}
	if lo == nil || *hi-*lo < parts {
		return nil, true, nil
	}
	step := (*hi - *lo) / parts
	for i := int64(1); i < parts; i++ {
		bounds = append(bounds, []string{strconv.FormatInt(*lo+i*step, 10)})
	}
	return bounds, true, nil
}
