package trigger

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// quoteRecord is record_out's quoting, for the round-trip tests.
func quoteRecord(row []*string) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, v := range row {
		if i > 0 {
			b.WriteByte(',')
		}
		if v == nil {
			continue
		}
		if *v == "" || strings.ContainsAny(*v, "\"\\(), \t\n\r\v\f") {
			b.WriteByte('"')
			for _, c := range []byte(*v) {
				if c == '"' || c == '\\' {
					b.WriteByte(c)
				}
				b.WriteByte(c)
			}
			b.WriteByte('"')
			continue
		}
		b.WriteString(*v)
	}
	b.WriteByte(')')
	return b.String()
}

func TestParseRecord(t *testing.T) {
	s := func(v string) *string { return &v }
	for _, row := range [][]*string{
		{s("1"), s("a \"q\" b\\c"), nil, s(""), s("(x,y)"), s("{1,2}"), s("NaN")},
		{nil},
		{s("")},
		{nil, nil},
		{s("a,b"), s(" lead"), s("trail ")},
	} {
		text := quoteRecord(row)
		got, err := parseRecord([]byte(text), len(row))
		require.NoError(t, err, text)
		require.Len(t, got, len(row))
		for i, v := range row {
			if v == nil {
				require.Equal(t, change.ValueNull, got[i].Kind, "%s field %d", text, i)
				continue
			}
			require.Equal(t, change.ValueText, got[i].Kind)
			require.Equal(t, *v, string(got[i].Data), "%s field %d", text, i)
		}
	}
	got, err := parseRecord([]byte("()"), 0)
	require.NoError(t, err)
	require.Empty(t, got)
	for _, bad := range []string{"", "(", "x)", `("unterminated)`, `(a\)`} {
		_, err := parseRecord([]byte(bad), -1)
		require.ErrorIs(t, err, errRecord, bad)
	}
	_, err = parseRecord([]byte("(1,2,3)"), 2)
	require.ErrorIs(t, err, errRecord)
}

func FuzzParseRecord(f *testing.F) {
	f.Add(`(1,"a ""q""",,"")`)
	f.Add(`()`)
	f.Fuzz(func(t *testing.T, text string) {
		row, err := parseRecord([]byte(text), -1)
		if err != nil {
			return
		}
		// Whatever parses re-quotes into something that parses the same.
		vals := make([]*string, len(row))
		for i, v := range row {
			if v.Kind == change.ValueText {
				s := string(v.Data)
				vals[i] = &s
			}
		}
		again, err := parseRecord([]byte(quoteRecord(vals)), len(row))
		if len(row) == 0 {
			return
		}
		require.NoError(t, err)
		require.Equal(t, row, again)
	})
}

func TestSnapshotText(t *testing.T) {
	for _, text := range []string{"10:20:", "10:20:10,15,19", "3:3:"} {
		s, err := ParseSnapshot(text)
		require.NoError(t, err)
		require.Equal(t, text, s.String())
		var u Snapshot
		require.NoError(t, u.UnmarshalText([]byte(text)))
		require.Equal(t, s, u)
	}
	s, _ := ParseSnapshot("10:20:12,15")
	require.True(t, s.Visible(9))
	require.True(t, s.Visible(11))
	require.False(t, s.Visible(12))
	require.False(t, s.Visible(20))
	for _, bad := range []string{"", "1:2", "5:3:", "1:5:7", "1:5:3,2", "a:b:"} {
		_, err := ParseSnapshot(bad)
		require.Error(t, err, bad)
	}
	require.True(t, Snapshot{}.IsZero())
}
