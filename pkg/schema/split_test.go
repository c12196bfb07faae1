package schema

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// minMax answers the min/max query with lo and hi (nil: an empty table)
// and records the SQL it was given.
type minMax struct {
	lo, hi *int64
	sql    string
}

func (m *minMax) Query(context.Context, string, ...any) (pgx.Rows, error) { panic("not used") }
func (m *minMax) QueryRow(_ context.Context, sql string, _ ...any) pgx.Row {
	m.sql = sql
	return m
}

func (m *minMax) Scan(dst ...any) error {
	*dst[0].(**int64), *dst[1].(**int64) = m.lo, m.hi
	return nil
}

func TestIntKeyBounds(t *testing.T) {
	ptr := func(v int64) *int64 { return &v }
	table := func(oid uint32, key ...string) *Table {
		return &Table{Columns: []Column{{Name: "id", TypeOID: oid}, {Name: "v", TypeOID: 25}}, PrimaryKey: key}
	}
	ctx := context.Background()

	q := &minMax{lo: ptr(-10), hi: ptr(290)}
	b, ok, err := IntKeyBounds(ctx, q, table(23, "id"), `"s"."t"`, `"id"`, 3)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, [][]string{{"90"}, {"190"}}, b, "three ranges of width 100 from -10")
	require.Equal(t, `SELECT min("id")::int8, max("id")::int8 FROM ONLY "s"."t"`, q.sql)

	for _, oid := range []uint32{20, 21} {
		_, ok, err = IntKeyBounds(ctx, &minMax{lo: ptr(1), hi: ptr(1000)}, table(oid, "id"), "t", "id", 4)
		require.NoError(t, err)
		require.True(t, ok, "type %d", oid)
	}

	b, ok, err = IntKeyBounds(ctx, &minMax{lo: ptr(1), hi: ptr(3)}, table(23, "id"), "t", "id", 4)
	require.NoError(t, err)
	require.True(t, ok)
	require.Empty(t, b, "keys span fewer values than ranges: one range")

	b, ok, err = IntKeyBounds(ctx, &minMax{}, table(20, "id"), "t", "id", 4)
	require.NoError(t, err)
	require.True(t, ok)
	require.Empty(t, b, "empty table: one range")

	for name, tbl := range map[string]*Table{
		"text key":      table(25, "id"),
		"composite key": table(23, "id", "v"),
		"no key":        table(23),
	} {
		q := &minMax{lo: ptr(1), hi: ptr(1000)}
		_, ok, err := IntKeyBounds(ctx, q, tbl, "t", "id", 4)
		require.NoError(t, err)
		require.False(t, ok, name)
		require.Empty(t, q.sql, "%s: no query", name)
	}
}
