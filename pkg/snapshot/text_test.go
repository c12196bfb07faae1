package snapshot

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

func TestRowWriterParsesCopyText(t *testing.T) {
	var got []change.Row
	w := &rowWriter{ncols: 3, batch: 2, flush: func(r []change.Row) error { got = append(got, r...); return nil }}
	// Rows split across writes, escapes, NULL, an empty string.
	for _, p := range []string{"1\ta\\tb\\\\c\t\\N\n2\t", "\\n\\x41\\101\t\n3\tx\ty\n"} {
		_, err := w.Write([]byte(p))
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	require.Equal(t, []change.Row{
		{change.Text("1"), change.Text("a\tb\\c"), change.Null},
		{change.Text("2"), change.Text("\nAA"), change.Text("")},
		{change.Text("3"), change.Text("x"), change.Text("y")},
	}, got)
	_, err := (&rowWriter{ncols: 2, batch: 1, flush: func([]change.Row) error { return nil }}).Write([]byte("1\n"))
	require.ErrorContains(t, err, "1 columns, want 2")
}
