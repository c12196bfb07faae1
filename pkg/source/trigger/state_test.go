package trigger

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestState: the state file round-trips, is written 0600 atomically, and
// every torn or altered file is an error, never "no state".
func TestState(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, StateFile)
	_, ok, err := loadState(path)
	require.NoError(t, err)
	require.False(t, ok)

	want := state{
		SystemID: 1<<63 + 5,
		Prev:     Snapshot{Xmin: 100, Xmax: 105, Xip: []uint64{100, 103}},
		Cur:      Snapshot{Xmin: 104, Xmax: 110},
		Base:     42,
	}
	require.NoError(t, storeState(path, want))
	got, ok, err := loadState(path)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, want, got)
	require.False(t, got.complete())
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	_, err = os.Stat(path + ".tmp")
	require.ErrorIs(t, err, os.ErrNotExist)

	b := want.encode()
	t.Logf("%s", b)
	for i := range len(b) {
		torn := b[:i]
		_, err := decodeState(torn)
		require.Error(t, err, "torn at %d", i)
		flipped := append([]byte(nil), b...)
		flipped[i] ^= 0x20
		_, err = decodeState(flipped)
		require.Error(t, err, "byte %d altered", i)
	}
	require.NoError(t, os.WriteFile(path, b[:len(b)-3], 0o600))
	_, _, err = loadState(path)
	require.ErrorContains(t, err, "is corrupt")

	done := state{SystemID: 7, Prev: want.Cur, Cur: want.Cur, Base: 50}
	require.True(t, done.complete())
	got, err = decodeState(done.encode())
	require.NoError(t, err)
	require.Equal(t, done, got)
}
