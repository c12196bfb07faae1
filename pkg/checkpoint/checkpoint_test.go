package checkpoint

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStoreLoad(t *testing.T) {
	f := New(filepath.Join(t.TempDir(), "pos"))
	_, ok, err := f.Load()
	require.NoError(t, err)
	require.False(t, ok, "a missing file is no position")

	require.NoError(t, f.Store(0x16B374D848))
	pos, ok, err := f.Load()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint64(0x16B374D848), pos)

	require.NoError(t, f.Store(7))
	pos, _, err = f.Load()
	require.NoError(t, err)
	require.Equal(t, uint64(7), pos)
	_, err = os.Stat(f.Path() + ".tmp")
	require.True(t, os.IsNotExist(err), "temp file renamed away")
}

func TestCorruptIsAnError(t *testing.T) {
	f := New(filepath.Join(t.TempDir(), "pos"))
	require.NoError(t, f.Store(42))
	b, err := os.ReadFile(f.Path())
	require.NoError(t, err)
	b[len(magic)] ^= 0x01
	require.NoError(t, os.WriteFile(f.Path(), b, 0o600))
	_, _, err = f.Load()
	require.ErrorContains(t, err, "checksum mismatch")

	require.NoError(t, os.WriteFile(f.Path(), []byte("short"), 0o600))
	_, _, err = f.Load()
	require.ErrorContains(t, err, "corrupt")
}
