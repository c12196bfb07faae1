package trail

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// closedTrail writes transactions of two relations, one of whose schema
// changes half way, and closes the writer cleanly.
func closedTrail(t *testing.T, dir string) []*change.Tx {
	t.Helper()
	w := openW(t, dir, Options{})
	users := usersRel()
	var txs []*change.Tx
	for n := range 20 {
		if n == 10 {
			users = usersRel()
			users.Columns = append(users.Columns, change.Column{Name: "email", TypeOID: 25, TypeName: "text", TypeMod: -1})
		}
		rel := users
		if n%3 == 0 {
			rel = ordersRel()
		}
		tx := txn(n)
		require.NoError(t, w.Begin(tx))
		c := insert(rel, n)
		c.New = append(c.New[:len(c.New):len(c.New)], make(change.Row, len(rel.Columns)-len(c.New))...)
		require.NoError(t, w.Change(c))
		require.NoError(t, w.Commit(tx))
		txs = append(txs, tx)
		if n%4 == 0 {
			_, err := w.Sync()
			require.NoError(t, err)
		}
	}
	require.NoError(t, w.Begin(txn(99))) // dropped by Close
	require.NoError(t, w.Change(insert(ordersRel(), 99)))
	require.NoError(t, w.Close())
	return txs
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	for name, b := range dirBytes(t, from) {
		require.NoError(t, os.WriteFile(filepath.Join(to, name), b, 0o600))
	}
}

// TestCloseStateMatchesScan: after a clean Close, Open adopts the state the
// Writer left instead of scanning the active segment, and ends up exactly
// where a scan would: same next seq, resume position, durable position and
// schema map. The state is consumed, and the trail continues seamlessly.
func TestCloseStateMatchesScan(t *testing.T) {
	dir, scanned := t.TempDir(), t.TempDir()
	txs := closedTrail(t, dir)
	require.FileExists(t, filepath.Join(dir, closeStateName))
	copyDir(t, dir, scanned)
	require.NoError(t, os.Remove(filepath.Join(scanned, closeStateName)))

	var logs bytes.Buffer
	want := openW(t, scanned, Options{})
	got := openW(t, dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.Contains(t, logs.String(), "scanned=false")
	require.NoFileExists(t, filepath.Join(dir, closeStateName), "Open consumes the close state")
	require.Equal(t, txs[len(txs)-1].EndLSN, got.LastEndLSN())
	require.Equal(t, want.NextSeq(), got.NextSeq())
	require.Equal(t, want.LastEndLSN(), got.LastEndLSN())
	require.Equal(t, want.Durable(), got.Durable())
	require.Equal(t, want.written, got.written)
	require.Equal(t, want.schemas, got.schemas)
	require.NoError(t, want.Close())

	// The next transaction uses the adopted schema map: the changed users
	// relation needs no new SCHEMA record, an unknown one gets one.
	next := txn(100)
	require.NoError(t, got.Begin(next))
	c := insert(got.schemas[usersRel().OID], 100)
	c.New = append(c.New[:len(c.New):len(c.New)], make(change.Row, len(c.Relation.Columns)-len(c.New))...)
	require.NoError(t, got.Change(c))
	require.NoError(t, got.Commit(next))
	end, err := got.Sync()
	require.NoError(t, err)
	require.Equal(t, next.EndLSN, end)
	require.NoError(t, got.Close())

	recs := readAll(t, dir, 0, ReaderOptions{})
	requireContiguous(t, recs, 1)
	require.Equal(t, append(txs, next), commits(recs))
	require.NotEqual(t, RecordSchema, recs[len(recs)-2].Type)
}

// TestCloseStateNotTrusted: a close state that does not match the segment
// any more — it grew, its end was rewritten, a newer segment exists, or
// the state itself is damaged — is dropped and Open scans as after a crash.
func TestCloseStateNotTrusted(t *testing.T) {
	for name, tamper := range map[string]func(t *testing.T, dir string){
		"segment grew": func(t *testing.T, dir string) {
			f, err := os.OpenFile(lastSegment(t, dir), os.O_WRONLY|os.O_APPEND, 0)
			require.NoError(t, err)
			_, err = f.Write([]byte("garbage!"))
			require.NoError(t, err)
			require.NoError(t, f.Close())
		},
		"end rewritten": func(t *testing.T, dir string) {
			path := lastSegment(t, dir)
			overwrite(t, path, fileSize(t, path)-8, []byte("garbage!"))
		},
		"state damaged": func(t *testing.T, dir string) {
			path := filepath.Join(dir, closeStateName)
			overwrite(t, path, fileSize(t, path)-5, []byte{0x5a})
		},
		"state of another segment": func(t *testing.T, dir string) {
			b := closeState{segFirst: 7, size: headerSize, nextSeq: 7, schemas: map[uint32]*change.Relation{}}.encode()
			require.NoError(t, os.WriteFile(filepath.Join(dir, closeStateName), b, 0o600))
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			txs := closedTrail(t, dir)
			tamper(t, dir)
			w := openW(t, dir, Options{})
			require.NoFileExists(t, filepath.Join(dir, closeStateName))
			if name == "end rewritten" {
				// The scan found the last COMMIT torn and cut it.
				require.Equal(t, txs[len(txs)-2].EndLSN, w.LastEndLSN())
				require.FileExists(t, lastSegment(t, dir)+brokenSuffix)
			} else {
				require.Equal(t, txs[len(txs)-1].EndLSN, w.LastEndLSN())
			}
			require.NoError(t, w.Close())
			requireContiguous(t, readAll(t, dir, 0, ReaderOptions{}), 1)
		})
	}
}

// TestCloseStateNotWrittenAfterFailure: a Writer with a sticky error leaves
// no close state: the next Open must recover by scanning.
func TestCloseStateNotWrittenAfterFailure(t *testing.T) {
	dir := t.TempDir()
	w := openW(t, dir, Options{})
	writeTx(t, w, 1, 2, usersRel())
	w.syncFile = func(*os.File) error { return os.ErrInvalid }
	_, err := w.Sync()
	require.Error(t, err)
	require.Error(t, w.Close())
	require.NoFileExists(t, filepath.Join(dir, closeStateName))
}
