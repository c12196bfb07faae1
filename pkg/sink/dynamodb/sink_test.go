package dynamodb_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/dynalitetest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/schema"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/sink/dynamodb"
)

// TestApplyItems: inserts, an update leaving a TOASTed column unchanged
// (UpdateItem keeps it), a key change (delete old, put new with the
// unchanged column read from the old item), deletes, several changes of one
// key collapsed in one batch, and the checkpoint item.
func TestApplyItems(t *testing.T) {
	srv := dynalitetest.StartT(t)
	s := open(t, sinkConfig(t, srv))
	rel := relation("items")
	big := strings.Repeat("toast ", 2000)
	var b batcher
	apply(t, s, b.next(ins(rel, 1, 1, big+"1"), ins(rel, 2, 2, big+"2"), ins(rel, 3, 3, big+"3"), ins(rel, 5, 5, big+"5")))
	b2 := b.next(
		upd(rel, 1, 10, ""),      // big unchanged
		move(rel, 2, 20, 21, ""), // key 2 → 20, big unchanged
		del(rel, 3),
		ins(rel, 4, 4, big+"4"), upd(rel, 4, 40, ""), upd(rel, 4, 41, ""), // collapsed: one put
		upd(rel, 5, 50, ""), upd(rel, 5, 51, ""), // collapsed: one update
		ins(rel, 7, 7, big+"7"),
	)
	apply(t, s, b2)
	// Two key changes in one batch, TOAST unchanged: 7 → 8 → 9.
	apply(t, s, b.next(move(rel, 7, 8, 70, ""), move(rel, 8, 9, 90, "")))

	items := scan(t, s.Client(), "public_items", "id")
	require.Len(t, items, 5, "items: %v", keys(items))
	require.Equal(t, "90", attr(items["9"]["v"]))
	require.Equal(t, big+"7", attr(items["9"]["big"]), "the unchanged column follows two key changes")
	require.Equal(t, "10", attr(items["1"]["v"]))
	require.Equal(t, big+"1", attr(items["1"]["big"]), "an unchanged TOASTed column is kept")
	require.NotContains(t, items, "2", "the old key of a key change is deleted")
	require.Equal(t, "21", attr(items["20"]["v"]))
	require.Equal(t, big+"2", attr(items["20"]["big"]), "a key change keeps the unchanged TOASTed column")
	require.NotContains(t, items, "3")
	require.Equal(t, "41", attr(items["4"]["v"]))
	require.Equal(t, big+"4", attr(items["4"]["big"]))
	require.Equal(t, "51", attr(items["5"]["v"]))
	require.Equal(t, big+"5", attr(items["5"]["big"]))
	// Versions: commit LSN digits, then the change's position (10 digits).
	lsn := strconv.FormatUint(uint64(b2.Txs[0].Tx.CommitLSN), 10)
	require.Equal(t, lsn+"0000000000", attr(items["1"]["cdcd_version"]))
	require.Equal(t, lsn+"0000000005", attr(items["4"]["cdcd_version"]))

	last := sink.Position{Seq: b.seq, EndLSN: change.LSN(b.lsn + 8)}
	pos, err := s.Position(context.Background())
	require.NoError(t, err)
	require.Equal(t, last, pos)
	// A reopened sink reads the same position.
	s2 := open(t, sinkConfig(t, srv))
	pos, err = s2.Position(context.Background())
	require.NoError(t, err)
	require.Equal(t, last, pos)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestFaultsNeverOvertaken injects throttling and UnprocessedItems on 30% of
// calls (and lost responses) while many batches update a few keys: the
// final items equal the model, no key is ever in two calls at once, and no
// write of a key is accepted after a newer one.
func TestFaultsNeverOvertaken(t *testing.T) {
	srv := dynalitetest.StartT(t)
	f := newFaults(0.3)
	cfg := sinkConfig(t, srv)
	cfg.APIOptions = f.options()
	cfg.MaxBackoff = 20 * time.Millisecond
	cfg.MaxAttempts = 3
	s := open(t, cfg)
	rel := relation("hot")
	const hot = 40
	model := map[int]int{}
	rnd := rand.New(rand.NewPCG(3, 4))
	var b batcher
	var batches []*sink.Batch
	for range 60 {
		var changes []*change.Change
		for range 1 + rnd.IntN(120) {
			id := 1 + rnd.IntN(hot)
			v := rnd.IntN(1_000_000)
			_, exists := model[id]
			switch {
			case !exists:
				changes = append(changes, ins(rel, id, v, "x"+strconv.Itoa(v)))
				model[id] = v
			case rnd.IntN(10) == 0:
				changes = append(changes, del(rel, id))
				delete(model, id)
			default:
				changes = append(changes, upd(rel, id, v, "x"+strconv.Itoa(v)))
				model[id] = v
			}
		}
		batches = append(batches, b.next(changes...))
	}
	s, reopens := applyAll(t, cfg, s, batches)
	items := scan(t, srv.Client(), "public_hot", "id") // a client without the faults
	require.Len(t, items, len(model))
	for id, v := range model {
		require.Equal(t, strconv.Itoa(v), attr(items[strconv.Itoa(id)]["v"]), "id %d", id)
		require.Equal(t, "x"+strconv.Itoa(v), attr(items[strconv.Itoa(id)]["big"]), "id %d", id)
	}
	f.check(t)
	st := s.Stats()
	t.Logf("calls %d, injected throttles %d, injected unprocessed items %d, reopens after failed calls %d; last sink's stats %+v",
		f.calls.Load(), f.throttled.Load(), f.unprocessed.Load(), reopens, st)
	require.Positive(t, f.throttled.Load())
	require.Positive(t, f.unprocessed.Load())
	require.Positive(t, reopens+int(st.Items), "something was written")
}

// TestReplayNeverGoesBack: after a crash whose checkpoint lags what was
// written, the replayed batches are written conditionally: an item never
// returns to an older state, and the end state is the same.
func TestReplayNeverGoesBack(t *testing.T) {
	srv := dynalitetest.StartT(t)
	s := open(t, sinkConfig(t, srv))
	rel := relation("replay")
	rnd := rand.New(rand.NewPCG(5, 6))
	var b batcher
	var batches []*sink.Batch
	exists := map[int]bool{}
	for i := range 12 {
		var changes []*change.Change
		if i == 6 { // a TRUNCATE, then rows written again after it
			changes = append(changes, &change.Change{Op: change.OpTruncate, Truncate: &change.Truncate{Relations: []*change.Relation{rel}}})
			clear(exists)
		}
		for range 30 {
			id := 1 + rnd.IntN(15)
			v := rnd.IntN(1000)
			switch {
			case !exists[id]:
				changes = append(changes, ins(rel, id, v, "b"))
				exists[id] = true
			case rnd.IntN(5) == 0:
				changes = append(changes, del(rel, id))
				exists[id] = false
			case rnd.IntN(3) == 0:
				changes = append(changes, upd(rel, id, v, "")) // unchanged TOAST: UpdateItem
			default:
				changes = append(changes, upd(rel, id, v, "b"))
			}
		}
		batches = append(batches, b.next(changes...))
	}
	for _, bt := range batches {
		apply(t, s, bt)
	}
	final := scan(t, s.Client(), "public_replay", "id")
	require.NoError(t, s.Close(context.Background()))

	// The crash: the checkpoint item still says batch 4, its high water the
	// last batch's commit (doc.go: the checkpoint item).
	hw := batches[len(batches)-1].Txs[0].Tx.CommitLSN
	_, err := s.Client().PutItem(context.Background(), &awsddb.PutItemInput{TableName: aws.String("cdcd_checkpoints"),
		Item: map[string]types.AttributeValue{
			"sink":       &types.AttributeValueMemberS{Value: "ddb"},
			"seq":        &types.AttributeValueMemberN{Value: strconv.FormatUint(batches[3].Position.Seq, 10)},
			"end_lsn":    &types.AttributeValueMemberN{Value: strconv.FormatUint(uint64(batches[3].Position.EndLSN), 10)},
			"high_water": &types.AttributeValueMemberN{Value: strconv.FormatUint(uint64(hw), 10)},
		}})
	require.NoError(t, err)
	s2 := open(t, sinkConfig(t, srv))
	pos, err := s2.Position(context.Background())
	require.NoError(t, err)
	require.Equal(t, batches[3].Position, pos)
	for i, bt := range batches[4:] {
		apply(t, s2, bt)
		now := scan(t, s2.Client(), "public_replay", "id")
		for id, it := range final {
			require.Equal(t, it, now[id], "after replaying batch %d, item %s is not its latest state", i+5, id)
		}
		// Items deleted by the end may reappear during the window (a put
		// replayed before its delete), never older than what was stored.
	}
	require.Equal(t, final, scan(t, s2.Client(), "public_replay", "id"))
	require.Positive(t, s2.Stats().Skipped, "replayed writes found newer versions")
}

// TestItemTooLarge: an item over 400 KB stops the sink with an error naming
// the table and key; with a dead-letter file it is recorded there and the
// batch goes on.
func TestItemTooLarge(t *testing.T) {
	srv := dynalitetest.StartT(t)
	rel := relation("large")
	huge := strings.Repeat("z", 410<<10)
	var b batcher
	s := open(t, sinkConfig(t, srv))
	err := s.Apply(context.Background(), b.next(ins(rel, 1, 1, "ok"), ins(rel, 7, 7, huge)))
	require.ErrorContains(t, err, "item public_large key id=7 is")
	require.ErrorContains(t, err, "over DynamoDB's 400 KB item limit")
	require.False(t, sink.IsRetriable(err))

	cfg := sinkConfig(t, srv)
	cfg.Name = "ddb-dl"
	cfg.DeadLetter = filepath.Join(t.TempDir(), "dead.jsonl")
	s2 := open(t, cfg)
	bt := b.next(ins(rel, 2, 2, "ok"), ins(rel, 8, 8, huge))
	apply(t, s2, bt)
	items := scan(t, s2.Client(), "public_large", "id")
	require.Contains(t, items, "2")
	require.NotContains(t, items, "8")
	dl, err := os.ReadFile(cfg.DeadLetter)
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(dl), "\n"))
	require.Contains(t, string(dl), `"table":"public_large"`)
	require.Contains(t, string(dl), `"key":{"id":{"N":"8"}}`)
	require.Equal(t, uint64(1), s2.Stats().DeadLetters)
	pos, err := s2.Position(context.Background())
	require.NoError(t, err)
	require.Equal(t, bt.Position, pos)
}

// TestMissingTable: without CreateTables, a missing table is one terminal
// error naming it and the remedy.
func TestMissingTable(t *testing.T) {
	srv := dynalitetest.StartT(t)
	cfg := sinkConfig(t, srv)
	cfg.CreateTables = false
	s := open(t, cfg)
	var b batcher
	err := s.Apply(context.Background(), b.next(ins(relation("absent"), 1, 1, "x")))
	require.ErrorContains(t, err, "table public_absent (for public.absent) does not exist: create it keyed by partition id (N), or set schema.create: true")
	require.False(t, sink.IsRetriable(err))
}

// TestNestedDocument: document: nested keeps the key at the top level and
// the columns under "doc"; a partial update sets paths inside it.
func TestNestedDocument(t *testing.T) {
	srv := dynalitetest.StartT(t)
	cfg := sinkConfig(t, srv)
	cfg.Document = dynamodb.Nested
	s := open(t, cfg)
	rel := relation("nested")
	var b batcher
	apply(t, s, b.next(ins(rel, 1, 1, "big"), ins(rel, 2, 2, "big2")))
	apply(t, s, b.next(upd(rel, 1, 10, ""), del(rel, 2)))
	items := scan(t, s.Client(), "public_nested", "id")
	require.Len(t, items, 1)
	doc, ok := items["1"]["doc"].(*types.AttributeValueMemberM)
	require.True(t, ok, "item %v", items["1"])
	require.Equal(t, "10", attr(doc.Value["v"]))
	require.Equal(t, "big", attr(doc.Value["big"]))
	require.Equal(t, "1", attr(items["1"]["id"]))
	require.Len(t, items["1"], 3, "id, doc, cdcd_version")
}

// TestBulkLoad: a snapshot chunk of COPY text (escapes, NULL) is loaded as
// items of version 0 and recorded; a truncating chunk empties the table.
func TestBulkLoad(t *testing.T) {
	srv := dynalitetest.StartT(t)
	s := open(t, sinkConfig(t, srv))
	def := &schema.Table{Target: schema.Name{Schema: "public", Name: "bulk"}, PrimaryKey: []string{"id"},
		Columns: []schema.Column{{Name: "id", TypeOID: 20}, {Name: "v", TypeOID: 23}, {Name: "big", TypeOID: 25}}}
	c := &sink.BulkChunk{SnapshotID: "snap1", ID: "public.bulk:0", Schema: "public", Table: "bulk", Columns: []string{"id", "v", "big"}, Def: def}
	n, err := s.Load(context.Background(), c, strings.NewReader("1\t10\ta\\tb\\\\c\\nd\n2\t\\N\t\\x41\\101\n"))
	require.NoError(t, err)
	require.Equal(t, int64(2), n)
	items := scan(t, s.Client(), "public_bulk", "id")
	require.Len(t, items, 2)
	require.Equal(t, "a\tb\\c\nd", attr(items["1"]["big"]))
	require.Equal(t, "<null>", attr(items["2"]["v"]))
	require.Equal(t, "AA", attr(items["2"]["big"]))
	require.Equal(t, "0", attr(items["1"]["cdcd_version"]))
	loaded, err := s.Loaded(context.Background(), "snap1")
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"public.bulk:0": true}, loaded)
	loaded, err = s.Loaded(context.Background(), "snap2")
	require.NoError(t, err)
	require.Empty(t, loaded)

	_, err = s.Load(context.Background(), &sink.BulkChunk{SnapshotID: "snap2", ID: "public.bulk:truncate", Truncate: true, Def: def}, nil)
	require.NoError(t, err)
	require.Empty(t, scan(t, s.Client(), "public_bulk", "id"))
	_, err = s.Load(context.Background(), &sink.BulkChunk{SnapshotID: "snap2", ID: "x", Def: def}, strings.NewReader("3\t1\tx\n4\t1"))
	require.ErrorContains(t, err, "COPY output ends inside a row")
}

// TestUpdateTooLarge: an update of some columns that grows the stored item
// past 400 KB is refused by DynamoDB; the error names the item, and with a
// dead-letter file the update is recorded there.
func TestUpdateTooLarge(t *testing.T) {
	srv := dynalitetest.StartT(t)
	rel := &change.Relation{OID: 1, Schema: "public", Name: "grow", ReplicaIdentity: 'd', PrimaryKey: []int{0},
		Columns: []change.Column{{Name: "id", TypeOID: 20}, {Name: "a", TypeOID: 25}, {Name: "b", TypeOID: 25}}}
	half := strings.Repeat("h", 250<<10)
	var b batcher
	cfg := sinkConfig(t, srv)
	cfg.DeadLetter = filepath.Join(t.TempDir(), "dead.jsonl")
	s := open(t, cfg)
	apply(t, s, b.next(&change.Change{Op: change.OpInsert, Relation: rel, New: change.Row{change.Text("1"), change.Text(half), change.Text("x")}}))
	// a unchanged (TOAST), b grows: together over 400 KB.
	apply(t, s, b.next(&change.Change{Op: change.OpUpdate, Relation: rel, New: change.Row{change.Text("1"), change.Unchanged, change.Text(half)}}))
	dl, err := os.ReadFile(cfg.DeadLetter)
	require.NoError(t, err)
	require.Contains(t, string(dl), `"key":{"id":{"N":"1"}}`)
	require.Equal(t, "x", attr(scan(t, srv.Client(), "public_grow", "id")["1"]["b"]), "the refused update left the item as it was")

	cfg.DeadLetter, cfg.Name = "", "ddb2"
	s2 := open(t, cfg)
	err = s2.Apply(context.Background(), b.next(&change.Change{Op: change.OpUpdate, Relation: rel, New: change.Row{change.Text("1"), change.Unchanged, change.Text(half)}}))
	require.ErrorContains(t, err, "item public_grow key id=1 would grow, over DynamoDB's 400 KB item limit")
}

// TestNoCredentials: without AWS credentials, opening the sink is one
// terminal error saying where credentials come from.
func TestNoCredentials(t *testing.T) {
	srv := dynalitetest.StartT(t)
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := dynamodb.New(ctx, dynamodb.Config{Name: "ddb", Region: "us-east-1", Endpoint: srv.Endpoint, MaxAttempts: 1})
	require.Error(t, err)
	require.ErrorContains(t, err, "set AWS credentials")
	require.False(t, sink.IsRetriable(err), "%v", err)
	require.Equal(t, 1, strings.Count(err.Error(), "\n")+1, "one line: %q", err)
}

// TestBulkLoadDuplicateKeys: configured keys that are not unique in the
// source put two rows on one item; the load does not fail on BatchWriteItem's
// duplicate-key rule.
func TestBulkLoadDuplicateKeys(t *testing.T) {
	srv := dynalitetest.StartT(t)
	cfg := sinkConfig(t, srv)
	cfg.Keys = map[string]dynamodb.Key{"public.dups": {Partition: "v"}}
	s := open(t, cfg)
	def := &schema.Table{Target: schema.Name{Schema: "public", Name: "dups"}, PrimaryKey: []string{"id"},
		Columns: []schema.Column{{Name: "id", TypeOID: 20}, {Name: "v", TypeOID: 23}, {Name: "big", TypeOID: 25}}}
	var rows strings.Builder
	for i := range 60 {
		fmt.Fprintf(&rows, "%d\t%d\tx\n", i, i%3)
	}
	n, err := s.Load(context.Background(), &sink.BulkChunk{SnapshotID: "s", ID: "c", Def: def}, strings.NewReader(rows.String()))
	require.NoError(t, err)
	require.Equal(t, int64(60), n)
	require.Len(t, scan(t, srv.Client(), "public_dups", "v"), 3)
}
