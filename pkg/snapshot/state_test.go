package snapshot

import (
	"context"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/schema"
	"github.com/cdcd-io/cdcd/pkg/sink"
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

// TestChunkRows: the default chunk size shrinks so that each worker gets at
// least 4 chunks of a table, down to 50000 rows; a configured one holds.
func TestChunkRows(t *testing.T) {
	def, err := Config{StateDir: "d", Sink: "s", Open: func(context.Context) (sink.Sink, error) { return nil, nil }, Parallelism: 2}.defaults()
	require.NoError(t, err)
	require.Equal(t, int64(125000), def.chunkRows(1_000_000), "8 chunks for 2 workers")
	require.Equal(t, int64(250000), def.chunkRows(5_000_000), "the default where it gives enough")
	require.Equal(t, int64(50000), def.chunkRows(100_000), "not under 50000")
	set := def
	set.ChunkRows, set.autoChunkRows = 300000, false
	require.Equal(t, int64(300000), set.chunkRows(1_000_000))
}

// TestSkips: a sink whose complete snapshot left consistent points, or
// whose state cannot be read, makes Skips true (a source must then not
// forward transactions before their commit); no state, or an unfinished
// one, does not.
func TestSkips(t *testing.T) {
	dir := t.TempDir()
	require.False(t, Skips(dir, "a", "b"), "no state")
	table := &TableState{Table: &schema.Table{Source: schema.Name{Schema: "public", Name: "t"}}, Skip: "0/16B3748"}
	require.NoError(t, storeState(dir, "a", &State{ID: "x", LSN: "0/16B3748", Tables: []*TableState{table}}))
	require.False(t, Skips(dir, "a", "b"), "still copying: nothing is dropped yet")
	require.NoError(t, storeState(dir, "a", &State{ID: "x", LSN: "0/16B3748", Complete: true, Tables: []*TableState{table}}))
	require.True(t, Skips(dir, "a", "b"))
	require.False(t, Skips(dir, "b"))
	require.NoError(t, os.WriteFile(statePath(dir, "b"), []byte("{"), 0o600))
	require.True(t, Skips(dir, "b"), "unreadable")
}
