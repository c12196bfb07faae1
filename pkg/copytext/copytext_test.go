package copytext

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

func TestParseLine(t *testing.T) {
	row, err := ParseLine([]byte("1\t\\N\ta\\tb\\\\c\\nd\t\t\\101\\x42\\q\\7\n"), 5)
	require.NoError(t, err)
	require.Equal(t, change.Row{
		{Kind: change.ValueText, Data: []byte("1")},
		change.Null,
		{Kind: change.ValueText, Data: []byte("a\tb\\c\nd")},
		{Kind: change.ValueText, Data: []byte{}},
		{Kind: change.ValueText, Data: []byte("AB" + "q\a")},
	}, row)

	line := []byte("x\ty")
	row, err = ParseLine(line, 2)
	require.NoError(t, err)
	line[0] = 'z'
	require.Equal(t, "x", string(row[0].Data), "values are copies")

	_, err = ParseLine([]byte("1\t2\n"), 3)
	require.ErrorContains(t, err, "has 2 columns, want 3")
	_, err = ParseLine([]byte("1\\"), 1)
	require.ErrorContains(t, err, "ends in a backslash")
	row, err = ParseLine([]byte("\\N"), 1)
	require.NoError(t, err)
	require.Equal(t, change.Null, row[0])
	row, err = ParseLine([]byte("\\\\N"), 1)
	require.NoError(t, err)
	require.Equal(t, `\N`, string(row[0].Data), "an escaped backslash before N is text")
}
