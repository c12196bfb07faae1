package oracle

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

func TestCheckNumber(t *testing.T) {
	anyNumber := targetColumn{DataType: "NUMBER", Precision: -1, Scale: -1}
	money := targetColumn{DataType: "NUMBER", Precision: 12, Scale: 2}
	for _, tc := range []struct {
		in   string
		tgt  targetColumn
		want string // "" = fits
	}{
		{"0", anyNumber, ""},
		{"-0.000000001", anyNumber, ""},
		{"12345678901234567890123456789012345678", anyNumber, ""},                         // 38 digits
		{"123456789012345678901234567890123456789", anyNumber, "39 significant digits"},   // 39
		{"1000000000000000000000000000000000000000000", anyNumber, ""},                    // 1e42: one digit
		{"0.00000000000000000000000000000000000000001234", anyNumber, ""},                 // leading zeros do not count
		{"123456789012345678901234567890.0123456789", anyNumber, "40 significant digits"}, // the zoo's numeric(40,10)
		{"1.10", money, ""}, // trailing zeros do not count
		{"1.005", money, "3 fraction digits, NUMBER(12,2) would round it"}, // silent rounding refused
		{"NaN", anyNumber, "NaN has no Oracle NUMBER"},
		{"-Infinity", anyNumber, "-Infinity has no Oracle NUMBER"},
		{"1e5", anyNumber, "is not a number"},
		{".", anyNumber, "is not a number"},
		{"1.2.3", anyNumber, "is not a number"},
	} {
		err := checkNumber([]byte(tc.in), tc.tgt)
		if tc.want == "" {
			require.NoError(t, err, tc.in)
			continue
		}
		require.ErrorContains(t, err, tc.want, tc.in)
		require.True(t, errors.Is(err, errValue))
	}
}

func TestIntervalsAndTimes(t *testing.T) {
	m := pgtype.NewMap()
	ds := targetColumn{DataType: "INTERVAL DAY(9) TO SECOND(6)"}
	ym := targetColumn{DataType: "INTERVAL YEAR(9) TO MONTH"}
	date := targetColumn{DataType: "DATE"}
	for _, tc := range []struct {
		oid  uint32
		tgt  targetColumn
		in   string
		want string // or "ERROR …"
	}{
		{oidInterval, ds, "3 days 04:05:06.789", "+3 04:05:06.789000"},
		{oidInterval, ds, "-1 days +02:00:00", "-0 22:00:00.000000"}, // one signed span
		{oidInterval, ds, "1 mon", "ERROR has months or years"},
		{oidInterval, ym, "1 year 2 mons", "+1-2"},
		{oidInterval, ym, "-14 mons", "-1-2"},
		{oidInterval, ym, "1 day", "ERROR has days or a time part"},
		{oidTime, ds, "24:00:00", "+1 00:00:00.000000"},
	} {
		b, err := newBinder(change.Column{Name: "c", TypeOID: tc.oid}, tc.tgt, false, "")
		require.NoError(t, err)
		a := newColArray(b.kind, false, 1)
		err = b.add(a, change.Text(tc.in), m, false)
		if strings.HasPrefix(tc.want, "ERROR ") {
			require.ErrorContains(t, err, strings.TrimPrefix(tc.want, "ERROR "), tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, []string{tc.want}, a.strs, tc.in)
	}
	b, err := newBinder(change.Column{Name: "d", TypeOID: oidTimestamp}, date, false, "")
	require.NoError(t, err)
	require.ErrorContains(t, b.add(newColArray(b.kind, false, 1), change.Text("2024-01-01 10:00:00.5"), m, false), "fractional seconds, which Oracle DATE drops")
	require.NoError(t, b.add(newColArray(b.kind, false, 1), change.Text("2024-01-01 10:00:00"), m, false))

	// Impossible pairs are refused when the table is first used.
	_, err = newBinder(change.Column{Name: "x", TypeOID: oidBytea, TypeName: "bytea"}, targetColumn{DataType: "NUMBER"}, false, "")
	require.ErrorContains(t, err, "column x: a bytea value cannot go into Oracle NUMBER")
	_, err = newBinder(change.Column{Name: "x", TypeOID: 25, TypeName: "text"}, targetColumn{DataType: "BLOB"}, false, "")
	require.ErrorContains(t, err, "only bytea and uuid can")

	// An empty bytea in a key would be a NULL key.
	b, err = newBinder(change.Column{Name: "k", TypeOID: oidBytea}, targetColumn{DataType: "RAW"}, true, "")
	require.NoError(t, err)
	require.ErrorContains(t, b.add(newColArray(b.kind, false, 1), change.Text(`\x`), m, false), "key column k is an empty bytea")
}
