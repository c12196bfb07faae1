package trail

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// sampleChanges covers every op, every ValueKind, empty versus NULL, binary
// data with zero bytes, a value larger than the write buffer, and both
// message kinds.
func sampleChanges(users, orders *change.Relation) []*change.Change {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<17) // 2 MiB
	return []*change.Change{
		{Op: change.OpInsert, LSN: 0x10, Relation: users,
			New: change.Row{change.Text("1"), change.Text(""), {Kind: change.ValueBinary, Data: []byte{0, 1, 0xff, 0}}}},
		{Op: change.OpInsert, LSN: 0x11, Relation: users,
			New: change.Row{change.Text("2"), change.Null, {Kind: change.ValueBinary, Data: []byte{}}}},
		{Op: change.OpInsert, LSN: 0x12, Relation: users,
			New: change.Row{change.Text("3"), {Kind: change.ValueText, Data: big}, change.Null}},
		{Op: change.OpUpdate, LSN: 0x20, Relation: users,
			Old: change.Row{change.Text("1"), {Kind: change.ValueAbsent}, {Kind: change.ValueAbsent}}, OldKeyOnly: true,
			New: change.Row{change.Text("10"), change.Text("x"), change.Unchanged}},
		{Op: change.OpUpdate, LSN: 0x21, Relation: users,
			New: change.Row{change.Text("2"), change.Text("y"), change.Unchanged}},
		{Op: change.OpUpdate, LSN: 0x22, Relation: orders,
			Old: change.Row{change.Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), change.Text("1.50"), change.Text("happy")},
			New: change.Row{change.Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), change.Text("2.50"), change.Text("sad")}},
		{Op: change.OpDelete, LSN: 0x30, Relation: users,
			Old: change.Row{change.Text("3"), {Kind: change.ValueAbsent}, {Kind: change.ValueAbsent}}, OldKeyOnly: true},
		{Op: change.OpTruncate, LSN: 0x40,
			Truncate: &change.Truncate{Relations: []*change.Relation{users, orders}, Cascade: true, RestartIdentity: true}},
		{Op: change.OpTruncate, LSN: 0x41, Truncate: &change.Truncate{Relations: []*change.Relation{orders}}},
		{Op: change.OpMessage, LSN: 0x50, Message: &change.Message{Transactional: true, Prefix: "cdcd", Content: []byte("hello\x00")}},
		{Op: change.OpMessage, LSN: 0x51, Message: &change.Message{Transactional: true, Prefix: "", Content: []byte{}}},
		{Op: change.OpMessage, LSN: 0x52, Message: &change.Message{Transactional: true, Prefix: "nil"}},
	}
}

func TestRoundTripEveryRecordType(t *testing.T) {
	dir := t.TempDir()
	w := openW(t, dir, Options{SystemID: 7})
	users, orders := usersRel(), ordersRel()
	tx := &change.Tx{XID: 42, FinalLSN: 0x100, CommitLSN: 0x100, EndLSN: 0x130,
		CommitTime: time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC), Origin: "node_a"}
	zeroTimeTx := &change.Tx{XID: 43, FinalLSN: 0x200, CommitLSN: 0x200, EndLSN: 0x230}

	require.NoError(t, w.Schema(orders)) // stand-alone SCHEMA
	nonTx := &change.Change{Op: change.OpMessage, LSN: 0x90, Message: &change.Message{Prefix: "heartbeat", Content: []byte("1")}}
	require.NoError(t, w.Change(nonTx))
	require.NoError(t, w.Begin(tx))
	changes := sampleChanges(users, orders)
	for _, c := range changes {
		require.NoError(t, w.Change(c))
	}
	require.NoError(t, w.Commit(tx))
	require.NoError(t, w.Begin(zeroTimeTx))
	require.NoError(t, w.Commit(zeroTimeTx))
	end, err := w.Sync()
	require.NoError(t, err)
	require.Equal(t, zeroTimeTx.EndLSN, end)
	require.NoError(t, w.Close())

	recs := readAll(t, dir, 0, ReaderOptions{})
	requireContiguous(t, recs, 1)
	want := []Record{
		{Type: RecordSchema, Relation: orders},
		{Type: RecordMessage, Change: nonTx},
		{Type: RecordBegin, Tx: tx},
		{Type: RecordSchema, Relation: users}, // written automatically before its first change
	}
	for _, c := range changes {
		typ := RecordChange
		if c.Op == change.OpMessage {
			typ = RecordMessage
		}
		want = append(want, Record{Type: typ, Change: c})
	}
	want = append(want, Record{Type: RecordCommit, Tx: tx}, Record{Type: RecordBegin, Tx: zeroTimeTx}, Record{Type: RecordCommit, Tx: zeroTimeTx})
	require.Len(t, recs, len(want))
	for i := range want {
		want[i].Seq = uint64(i + 1)
		require.Equal(t, want[i], recs[i], "record %d (%s)", i, want[i].Type)
	}
	// Kinds that carry no data must stay distinguishable from each other
	// and from empty data.
	upd := recs[7].Change
	require.Equal(t, change.ValueAbsent, upd.Old[1].Kind)
	require.Equal(t, change.ValueUnchanged, upd.New[2].Kind)
	require.Equal(t, change.ValueNull, recs[5].Change.New[1].Kind)
	require.Equal(t, change.ValueText, recs[4].Change.New[1].Kind)
	require.Empty(t, recs[4].Change.New[1].Data)
}

func TestRecordTypeString(t *testing.T) {
	require.Equal(t, "COMMIT", RecordCommit.String())
	require.Equal(t, "RecordType(9)", RecordType(9).String())
}

func TestWriterRejectsInvalidChanges(t *testing.T) {
	w := openW(t, t.TempDir(), Options{})
	defer w.Close()
	users := usersRel()
	require.Error(t, w.Change(insert(users, 1)), "insert outside a transaction")
	require.Error(t, w.Change(&change.Change{Op: change.OpMessage, Message: &change.Message{Transactional: true}}))
	require.Error(t, w.Commit(txn(1)), "commit without begin")
	require.NoError(t, w.Begin(txn(1)))
	require.Error(t, w.Begin(txn(2)), "nested begin")
	require.Error(t, w.Commit(txn(2)), "commit of another xid")
	require.Error(t, w.Change(&change.Change{Op: change.OpInsert, Relation: users, New: change.Row{change.Null}}), "short row")
	require.Error(t, w.Change(&change.Change{Op: change.Op(99)}))
	require.Error(t, w.Schema(&change.Relation{OID: 1, PrimaryKey: []int{3}}))
	require.NoError(t, w.Commit(txn(1)), "errors above are not sticky")
}

// encodeRecord is the inverse of decodeRecord, for the fuzz round trip.
func encodeRecord(rec Record) []byte {
	switch rec.Type {
	case RecordSchema:
		return appendSchema(nil, rec.Seq, rec.Relation)
	case RecordBegin, RecordCommit:
		return appendTx(nil, rec.Type, rec.Seq, rec.Tx)
	default:
		return appendChange(nil, rec.Seq, rec.Change)
	}
}

// fuzzSeeds are valid payloads of every record type, the starting points
// the committed corpus under testdata/fuzz was made from.
func fuzzSeeds() [][]byte {
	users, orders := usersRel(), ordersRel()
	seeds := [][]byte{
		appendSchema(nil, 1, users),
		appendSchema(nil, 2, &change.Relation{OID: 5}),
		appendTx(nil, RecordBegin, 3, &change.Tx{XID: 1, FinalLSN: 2, CommitTime: time.Unix(1700000000, 5).UTC()}),
		appendTx(nil, RecordCommit, 4, &change.Tx{XID: 1, CommitLSN: 2, EndLSN: 3, Origin: "o"}),
	}
	for i, c := range sampleChanges(users, orders) {
		if c.Op == change.OpInsert && len(c.New[1].Data) > 1000 {
			c.New[1] = change.Text("not so big")
		}
		seeds = append(seeds, appendChange(nil, uint64(10+i), c))
	}
	return seeds
}

func fuzzRelations() map[uint32]*change.Relation {
	users, orders := usersRel(), ordersRel()
	return map[uint32]*change.Relation{users.OID: users, orders.OID: orders, 5: {OID: 5}}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	rels := fuzzRelations()
	var a blocks // shared across inputs, as a Reader's across records
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := decodeRecord(data, rels, nil)
		// Carved from blocks, the same record, error for error.
		fromBlocks, berr := decodeRecord(a.copyBytes(data), rels, &a)
		require.Equal(t, fmt.Sprint(err), fmt.Sprint(berr))
		if err != nil {
			return
		}
		require.Equal(t, rec, fromBlocks)
		again, err := decodeRecord(encodeRecord(rec), rels, nil)
		require.NoError(t, err)
		require.Equal(t, rec, again)
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzDecodeRecord from the
// seeds when TRAIL_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("TRAIL_WRITE_CORPUS") != "1" {
		t.Skip("set TRAIL_WRITE_CORPUS=1 to regenerate the fuzz seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeRecord")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for i, s := range fuzzSeeds() {
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(content), 0o644))
	}
}
