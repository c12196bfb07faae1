package checkpoint

import (
	"os"
	"path/filepath"
	"syscall"
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

// TestOwnerOnly: a checkpoint is 0600 whatever the umask, even when a
// temporary with a wider mode was left behind by a crash.
func TestOwnerOnly(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	f := New(filepath.Join(t.TempDir(), "capture.ack"))
	require.NoError(t, os.WriteFile(f.Path()+".tmp", []byte("left over"), 0o666))
	require.NoError(t, os.Chmod(f.Path()+".tmp", 0o666))
	require.NoError(t, f.Store(42))
	st, err := os.Stat(f.Path())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}
