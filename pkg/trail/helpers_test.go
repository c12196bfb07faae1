package trail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// usersRel and ordersRel are the fixture relations.
func usersRel() *change.Relation {
	return &change.Relation{
		OID: 16384, Schema: "public", Name: "users", ReplicaIdentity: 'd',
		Columns: []change.Column{
			{Name: "id", TypeOID: 20, TypeName: "int8", TypeMod: -1, Key: true},
			{Name: "name", TypeOID: 25, TypeName: "text", TypeMod: -1},
			{Name: "avatar", TypeOID: 17, TypeName: "bytea", TypeMod: -1},
		},
		PrimaryKey: []int{0},
	}
}

func ordersRel() *change.Relation {
	return &change.Relation{
		OID: 16390, Schema: "shop", Name: "orders", ReplicaIdentity: 'f',
		Columns: []change.Column{
			{Name: "order_id", TypeOID: 2950, TypeName: "uuid", TypeMod: -1, Key: true},
			{Name: "amount", TypeOID: 1700, TypeName: "numeric", TypeMod: 655366, Key: true},
			{Name: "mood", TypeOID: 99999, TypeName: "public.mood", TypeMod: -1, Key: true},
		},
		PrimaryKey: []int{0},
	}
}

// txn returns a transaction whose positions derive from n, so tests can tell
// transactions apart and predict EndLSNs.
func txn(n int) *change.Tx {
	return &change.Tx{
		XID:        uint32(1000 + n),
		FinalLSN:   change.LSN(0x1000_0000 + n*0x100),
		CommitLSN:  change.LSN(0x1000_0000 + n*0x100),
		EndLSN:     change.LSN(0x1000_0000 + n*0x100 + 0x30),
		CommitTime: time.Date(2025, 3, 1, 12, 0, 0, n*1000, time.UTC),
	}
}

func insert(rel *change.Relation, id int) *change.Change {
	return &change.Change{
		Op: change.OpInsert, LSN: change.LSN(0x1000_0000 + id), Relation: rel,
		New: change.Row{change.Text(fmt.Sprint(id)), change.Text(fmt.Sprintf("user %d", id)), change.Null},
	}
}

// writeTx writes transaction n with k inserts into rel, without syncing.
func writeTx(t testing.TB, w *Writer, n, k int, rel *change.Relation) *change.Tx {
	t.Helper()
	tx := txn(n)
	require.NoError(t, w.Begin(tx))
	for i := range k {
		require.NoError(t, w.Change(insert(rel, n*1000+i)))
	}
	require.NoError(t, w.Commit(tx))
	return tx
}

func openW(t testing.TB, dir string, opts Options) *Writer {
	t.Helper()
	w, err := Open(dir, opts)
	require.NoError(t, err)
	return w
}

// readAll reads the whole trail from seq from without following.
func readAll(t testing.TB, dir string, from uint64, opts ReaderOptions) []Record {
	t.Helper()
	recs, err := tryReadAll(dir, from, opts)
	require.NoError(t, err)
	return recs
}

func tryReadAll(dir string, from uint64, opts ReaderOptions) ([]Record, error) {
	r, err := NewReader(dir, from, opts)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var recs []Record
	for {
		rec, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return recs, nil
		}
		if err != nil {
			return recs, err
		}
		recs = append(recs, rec)
	}
}

// requireContiguous checks that seqs run without gaps from first.
func requireContiguous(t testing.TB, recs []Record, first uint64) {
	t.Helper()
	for i, r := range recs {
		require.Equal(t, first+uint64(i), r.Seq, "record %d", i)
	}
}

func commits(recs []Record) []*change.Tx {
	var txs []*change.Tx
	for _, r := range recs {
		if r.Type == RecordCommit {
			txs = append(txs, r.Tx)
		}
	}
	return txs
}

func segPath(dir string, first uint64) string { return filepath.Join(dir, segmentName(first)) }

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	return st.Size()
}

// lastSegment is the path of the active segment.
func lastSegment(t testing.TB, dir string) string {
	t.Helper()
	seqs, err := listSegments(dir)
	require.NoError(t, err)
	require.NotEmpty(t, seqs)
	return segPath(dir, seqs[len(seqs)-1])
}
