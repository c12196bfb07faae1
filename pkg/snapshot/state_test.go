package snapshot

import (
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestStateOwnerOnly: the state file in the trail directory is 0600 whatever
// the umask, even when a temporary with a wider mode was left by a crash.
func TestStateOwnerOnly(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	p := statePath(dir, "s")
	require.NoError(t, os.WriteFile(p+".tmp", []byte("left over"), 0o666))
	require.NoError(t, os.Chmod(p+".tmp", 0o666))
	require.NoError(t, storeState(dir, "s", &State{ID: "x", LSN: "0/0"}))
	st, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	got, err := LoadState(dir, "s")
	require.NoError(t, err)
	require.Equal(t, "x", got.ID)
}
