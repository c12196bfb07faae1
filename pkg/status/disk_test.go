package status

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/checkpoint"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// TestFromDisk: with the daemon down, a sink's position comes from its
// checkpoint file (seq) and the trail (LSN), and its lag in transactions
// and seconds from the commits after it.
func TestFromDisk(t *testing.T) {
	dir := t.TempDir()
	w, err := trail.Open(dir, trail.Options{SystemID: 42})
	require.NoError(t, err)
	rel := &change.Relation{OID: 7, Schema: "app", Name: "orders", ReplicaIdentity: 'd',
		Columns: []change.Column{{Name: "id", TypeName: "int8", Key: true}}, PrimaryKey: []int{0}}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var commitSeqs []uint64
	for i := 1; i <= 3; i++ {
		tx := &change.Tx{XID: uint32(900 + i), FinalLSN: change.LSN(i * 1000), CommitLSN: change.LSN(i * 1000), EndLSN: change.LSN(i*1000 + 8), CommitTime: t0.Add(time.Duration(i) * time.Second)}
		require.NoError(t, w.Begin(tx))
		require.NoError(t, w.Change(&change.Change{Op: change.OpInsert, Relation: rel, New: change.Row{change.Text("1")}}))
		require.NoError(t, w.Commit(tx))
		commitSeqs = append(commitSeqs, w.NextSeq()-1)
	}
	_, err = w.Sync()
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, checkpoint.New(filepath.Join(dir, "sink-files.pos")).Store(commitSeqs[0]))

	now := t0.Add(10 * time.Second)
	r := FromDisk(context.Background(), DiskConfig{
		TrailDir: dir,
		Sinks: []DiskSink{
			{Name: "files", Kind: "stdout"},
			{Name: "db", Kind: "postgres", Position: func(context.Context) (uint64, change.LSN, error) { return commitSeqs[2], 3008, nil }},
			{Name: "new", Kind: "stdout"},
		},
		Now: func() time.Time { return now },
	})
	require.False(t, r.Running)
	require.Equal(t, "0/BC0", r.Capture.Position, "the trail's last end LSN")
	require.Equal(t, 1, r.Trail.Segments)
	require.Empty(t, r.Trail.Error)

	files := r.Sinks[0]
	require.Equal(t, commitSeqs[0], files.Seq)
	require.Equal(t, "0/3F0", files.Position, "LSN of the commit at its seq, from the trail")
	require.Equal(t, int64(2), files.LagTransactions)
	require.Equal(t, 8.0, files.LagSeconds, "its first unapplied transaction committed at t0+2s")

	db := r.Sinks[1]
	require.Equal(t, "0/BC0", db.Position)
	require.Equal(t, int64(0), db.LagTransactions)
	require.Equal(t, 0.0, db.LagSeconds)

	fresh := r.Sinks[2]
	require.Equal(t, uint64(0), fresh.Seq)
	require.Equal(t, int64(3), fresh.LagTransactions)

	var b bytes.Buffer
	require.NoError(t, r.WriteTable(&b))
	require.Contains(t, b.String(), "cdcd is not running")
	require.Contains(t, b.String(), "2 tx behind")
}

func TestBytes(t *testing.T) {
	require.Equal(t, "512 B", Bytes(512))
	require.Equal(t, "1.5 KiB", Bytes(1536))
	require.Equal(t, "4.0 GiB", Bytes(4<<30))
}
