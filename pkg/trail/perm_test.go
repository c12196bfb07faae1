package trail

import (
	"bytes"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// withUmask runs the rest of the test under umask m (process-wide: the
// tests of this package do not run in parallel).
func withUmask(t *testing.T, m int) {
	old := syscall.Umask(m)
	t.Cleanup(func() { syscall.Umask(old) })
}

// requireOwnerOnly walks dir: every directory 0700, every file 0600.
func requireOwnerOnly(t *testing.T, dir string) {
	t.Helper()
	n := 0
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		st, err := os.Stat(path)
		require.NoError(t, err)
		want := fs.FileMode(filePerm)
		if d.IsDir() {
			want = dirPerm
		}
		require.Equal(t, want, st.Mode().Perm(), "%s", path)
		n++
		return nil
	}))
	require.Greater(t, n, 1)
}

// TestOwnerOnlyFiles: whatever the umask, the trail directory is created
// 0700 and every segment, temporary and .broken file 0600.
func TestOwnerOnlyFiles(t *testing.T) {
	withUmask(t, 0)
	dir := filepath.Join(t.TempDir(), "a", "trail")
	w := openW(t, dir, Options{SegmentBytes: 4096})
	for n := range 20 { // several rollovers
		writeTx(t, w, n, 5, usersRel())
		_, err := w.Sync()
		require.NoError(t, err)
	}
	// A leftover temporary with a wide mode is not reused as it is.
	next := segPath(dir, w.NextSeq()) + tmpSuffix
	require.NoError(t, os.WriteFile(next, nil, 0o666))
	require.NoError(t, os.Chmod(next, 0o666))
	w.mu.Lock()
	require.NoError(t, w.rollover()) // between transactions, synced
	w.mu.Unlock()
	require.FileExists(t, strings.TrimSuffix(next, tmpSuffix))
	for n := range 10 {
		writeTx(t, w, 20+n, 5, usersRel())
		_, err := w.Sync()
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	f, err := os.OpenFile(lastSegment(t, dir), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.Write([]byte("torn tail"))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	w = openW(t, dir, Options{})
	require.NoError(t, w.Close())
	require.FileExists(t, lastSegment(t, dir)+brokenSuffix)
	segs, err := Segments(dir)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(segs), 3)

	requireOwnerOnly(t, filepath.Dir(dir)) // the created parent too
}

// TestExistingDirectoryModeKept: an existing directory keeps the mode its
// operator gave it (never widened, not silently narrowed), with a warning
// when others can read it.
func TestExistingDirectoryModeKept(t *testing.T) {
	for _, mode := range []fs.FileMode{0o700, 0o750, 0o755} {
		dir := filepath.Join(t.TempDir(), "trail")
		require.NoError(t, os.Mkdir(dir, mode))
		require.NoError(t, os.Chmod(dir, mode))
		var logs bytes.Buffer
		w := openW(t, dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		require.NoError(t, w.Close())
		st, err := os.Stat(dir)
		require.NoError(t, err)
		require.Equal(t, mode, st.Mode().Perm())
		if mode == 0o700 {
			require.NotContains(t, logs.String(), "accessible to other users")
		} else {
			require.Contains(t, logs.String(), "accessible to other users")
		}
	}
}
