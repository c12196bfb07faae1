package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

func TestTrailDump(t *testing.T) {
	dir := t.TempDir()
	w, err := trail.Open(dir, trail.Options{SystemID: 42})
	require.NoError(t, err)
	rel := &change.Relation{OID: 7, Schema: "app", Name: "orders", ReplicaIdentity: 'd',
		Columns:    []change.Column{{Name: "id", TypeName: "int8", Key: true}, {Name: "note", TypeName: "text"}},
		PrimaryKey: []int{0}}
	tx := &change.Tx{XID: 900, FinalLSN: 0x16B374D8, CommitLSN: 0x16B374D8, EndLSN: 0x16B37500, CommitTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	require.NoError(t, w.Begin(tx))
	require.NoError(t, w.Change(&change.Change{Op: change.OpInsert, Relation: rel, New: change.Row{change.Text("1"), change.Text("hello")}}))
	require.NoError(t, w.Change(&change.Change{Op: change.OpUpdate, Relation: rel, New: change.Row{change.Text("1"), change.Unchanged}}))
	require.NoError(t, w.Commit(tx))
	// Forwarded before its commit: the BEGIN has no commit position.
	fwd := &change.Tx{XID: 901, FinalLSN: 0x16B37600, CommitLSN: 0x16B37600, EndLSN: 0x16B37700}
	require.NoError(t, w.Begin(&change.Tx{XID: 901}))
	require.NoError(t, w.Commit(fwd))
	_, err = w.Sync()
	require.NoError(t, err)
	require.NoError(t, w.Close())

	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetArgs([]string{"trail", "dump", dir})
	require.NoError(t, root.Execute())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 8, out.String())
	require.Equal(t, "# trail "+dir+": source=postgres system_id=000000000000002a segments=1", lines[0])
	lines = lines[1:]
	require.Contains(t, lines[0], "BEGIN")
	require.Contains(t, lines[0], "xid=900 final_lsn=0/16B374D8 commit_time=2026-01-02T03:04:05Z")
	require.Contains(t, lines[1], "SCHEMA")
	require.Contains(t, lines[1], "app.orders oid=7 identity=d columns=(id int8 pk, note text)")
	require.Contains(t, lines[2], `insert lsn=0/0 app.orders new={id="1", note="hello"}`)
	require.Contains(t, lines[3], `note=<unchanged-toast>`)
	require.Contains(t, lines[4], "COMMIT")
	require.Contains(t, lines[4], "end_lsn=0/16B37500")
	require.Contains(t, lines[5], "xid=901 forwarded")
	require.Contains(t, lines[6], "xid=901 commit_lsn=0/16B37600 end_lsn=0/16B37700")

	out.Reset()
	root = newRoot()
	root.SetOut(&out)
	root.SetArgs([]string{"trail", "dump", dir, "--from", "3", "--limit", "1"})
	require.NoError(t, root.Execute())
	require.Equal(t, 2, strings.Count(out.String(), "\n"), "the header line and one record")
	require.Contains(t, out.String(), "insert")
}
