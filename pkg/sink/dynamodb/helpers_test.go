package dynamodb_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/dynalitetest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/sink/dynamodb"
)

func testLogger() *slog.Logger {
	if os.Getenv("CDCD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// setAWSEnv points the AWS default chain at dynalite's static credentials.
func setAWSEnv(t *testing.T) {
	for _, kv := range dynalitetest.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

func sinkConfig(t *testing.T, srv *dynalitetest.Server) dynamodb.Config {
	setAWSEnv(t)
	return dynamodb.Config{Name: "ddb", Endpoint: srv.Endpoint, CreateTables: true, Logger: testLogger()}
}

func open(t *testing.T, cfg dynamodb.Config) *dynamodb.Sink {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := dynamodb.New(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// relation is public.<name>(id int8 PRIMARY KEY, v int4, big text).
func relation(name string) *change.Relation {
	return &change.Relation{OID: 1, Schema: "public", Name: name, ReplicaIdentity: 'd', PrimaryKey: []int{0},
		Columns: []change.Column{{Name: "id", TypeOID: 20, Key: true}, {Name: "v", TypeOID: 23}, {Name: "big", TypeOID: 25}}}
}

func row(id, v int, big string) change.Row {
	r := change.Row{change.Text(fmt.Sprint(id)), change.Text(fmt.Sprint(v)), change.Text(big)}
	if big == "" {
		r[2] = change.Unchanged
	}
	return r
}

func ins(rel *change.Relation, id, v int, big string) *change.Change {
	return &change.Change{Op: change.OpInsert, Relation: rel, New: row(id, v, big)}
}

// upd updates row id; big "" leaves it unchanged (TOAST).
func upd(rel *change.Relation, id, v int, big string) *change.Change {
	return &change.Change{Op: change.OpUpdate, Relation: rel, New: row(id, v, big)}
}

// move changes row oldID's key to id.
func move(rel *change.Relation, oldID, id, v int, big string) *change.Change {
	c := upd(rel, id, v, big)
	c.Old, c.OldKeyOnly = change.Row{change.Text(fmt.Sprint(oldID)), {}, {}}, true
	return c
}

func del(rel *change.Relation, id int) *change.Change {
	return &change.Change{Op: change.OpDelete, Relation: rel, Old: change.Row{change.Text(fmt.Sprint(id)), {}, {}}, OldKeyOnly: true}
}

// batcher makes batches of one transaction each with increasing LSNs.
type batcher struct{ seq, lsn uint64 }

func (b *batcher) next(changes ...*change.Change) *sink.Batch {
	b.seq += 3
	b.lsn += 0x100
	tx := &change.Tx{XID: uint32(b.seq), FinalLSN: change.LSN(b.lsn), CommitLSN: change.LSN(b.lsn), EndLSN: change.LSN(b.lsn + 8)}
	return &sink.Batch{Txs: []sink.Tx{{Tx: tx, Changes: changes}}, Rows: len(changes),
		Position: sink.Position{Seq: b.seq, EndLSN: tx.EndLSN}}
}

func apply(t *testing.T, s *dynamodb.Sink, b *sink.Batch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, s.Apply(ctx, b))
}

// applyAll applies batches the way an apply worker does: on a retriable
// error it reopens the sink and resumes after the checkpoint's position.
// It returns the sink it ended with and the number of reopens.
func applyAll(t *testing.T, cfg dynamodb.Config, s *dynamodb.Sink, batches []*sink.Batch) (*dynamodb.Sink, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	reopens := 0
	for i := 0; i < len(batches); i++ {
		err := s.Apply(ctx, batches[i])
		if err == nil {
			continue
		}
		require.True(t, sink.IsRetriable(err), "terminal error: %v", err)
		reopens++
		require.Less(t, reopens, 50, "too many reopens, last error: %v", err)
		s.Close(ctx)
		for {
			if s, err = dynamodb.New(ctx, cfg); err == nil {
				break
			}
			require.True(t, sink.IsRetriable(err), "terminal error: %v", err)
		}
		t.Cleanup(func() { s.Close(context.Background()) })
		pos, err := s.Position(ctx)
		for err != nil {
			require.True(t, sink.IsRetriable(err), "terminal error: %v", err)
			pos, err = s.Position(ctx)
		}
		i = -1
		for j, b := range batches {
			if b.Position == pos {
				i = j
			}
		}
	}
	return s, reopens
}

// scan reads a whole table: partition key text → item.
func scan(t testing.TB, c *awsddb.Client, table, pk string) map[string]map[string]types.AttributeValue {
	t.Helper()
	out := map[string]map[string]types.AttributeValue{}
	p := awsddb.NewScanPaginator(c, &awsddb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		require.NoError(t, err)
		for _, it := range page.Items {
			out[attr(it[pk])] = it
		}
	}
	return out
}

// attr is the text of a scalar attribute.
func attr(v types.AttributeValue) string {
	switch x := v.(type) {
	case *types.AttributeValueMemberS:
		return x.Value
	case *types.AttributeValueMemberN:
		return x.Value
	case *types.AttributeValueMemberB:
		return fmt.Sprintf("%x", x.Value)
	case *types.AttributeValueMemberBOOL:
		return fmt.Sprint(x.Value)
	case *types.AttributeValueMemberNULL:
		return "<null>"
	case nil:
		return "<missing>"
	}
	return fmt.Sprintf("%T", v)
}

// olderVersion compares version numbers (decimal, no leading zeros).
func olderVersion(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// faults is SDK middleware around the real client that injects throttling
// and UnprocessedItems on a share of calls, and checks on the way that a key
// is never in two calls at once and that no write of a key is accepted
// after a newer one (versions only grow).
type faults struct {
	rate float64
	mu   sync.Mutex
	rnd  *rand.Rand

	inflight map[string]bool
	accepted map[string]string // key → last accepted version
	problems []string

	throttled, unprocessed, calls atomic.Int64
	byOp                          sync.Map // operation name → *atomic.Int64
}

// callsByOp is the number of calls of each operation.
func (f *faults) callsByOp() map[string]int64 {
	out := map[string]int64{}
	f.byOp.Range(func(k, v any) bool { out[k.(string)] = v.(*atomic.Int64).Load(); return true })
	return out
}

func newFaults(rate float64) *faults {
	return &faults{rate: rate, rnd: rand.New(rand.NewPCG(1, 2)), inflight: map[string]bool{}, accepted: map[string]string{}}
}

func (f *faults) roll() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rnd.Float64() < f.rate
}

func (f *faults) problem(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.problems) < 20 {
		f.problems = append(f.problems, fmt.Sprintf(format, args...))
	}
}

// write is one item write seen by the middleware.
type write struct{ key, version string }

func itemKey(table string, key map[string]types.AttributeValue) string {
	var parts []string
	for k, v := range key {
		if k == "cdcd_version" {
			continue
		}
		parts = append(parts, k+"="+attr(v))
	}
	sort.Strings(parts)
	return table + ":" + strings.Join(parts, ",")
}

func (f *faults) begin(ws []write) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range ws {
		if f.inflight[w.key] {
			f.problems = append(f.problems, "key in two calls at once: "+w.key)
		}
		f.inflight[w.key] = true
	}
}

func (f *faults) end(ws []write, accepted func(int) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, w := range ws {
		delete(f.inflight, w.key)
		if !accepted(i) {
			continue
		}
		if w.version == "" { // a delete: a replayed older put may follow
			delete(f.accepted, w.key)
			continue
		}
		if last, ok := f.accepted[w.key]; ok && olderVersion(w.version, last) {
			f.problems = append(f.problems, fmt.Sprintf("%s: version %s written after %s", w.key, w.version, last))
		}
		f.accepted[w.key] = w.version
	}
}

func (f *faults) options() []func(*middleware.Stack) error {
	return []func(*middleware.Stack) error{f.addInitialize, f.addFinalize}
}

// addInitialize sees each operation once (around all its retries): it
// tracks keys in flight and, on rate of BatchWriteItem calls, sends only part
// of the items and returns the rest as UnprocessedItems.
func (f *faults) addInitialize(st *middleware.Stack) error {
	return st.Initialize.Add(middleware.InitializeMiddlewareFunc("cdcd-faults",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			f.calls.Add(1)
			n, _ := f.byOp.LoadOrStore(middleware.GetOperationName(ctx), new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
			switch p := in.Parameters.(type) {
			case *awsddb.BatchWriteItemInput:
				var ws []write
				var reqs []struct {
					table string
					r     types.WriteRequest
				}
				for table, rs := range p.RequestItems {
					for _, r := range rs {
						reqs = append(reqs, struct {
							table string
							r     types.WriteRequest
						}{table, r})
						if r.PutRequest != nil {
							ws = append(ws, write{itemKey(table, keyOf(table, r.PutRequest.Item)), attr(r.PutRequest.Item["cdcd_version"])})
						} else {
							ws = append(ws, write{itemKey(table, r.DeleteRequest.Key), ""})
						}
					}
				}
				f.begin(ws)
				keep := len(reqs)
				if len(reqs) > 1 && f.roll() {
					keep = 1 + len(reqs)/3
				}
				sent := map[string][]types.WriteRequest{}
				held := map[string][]types.WriteRequest{}
				for i, r := range reqs {
					if i < keep {
						sent[r.table] = append(sent[r.table], r.r)
					} else {
						held[r.table] = append(held[r.table], r.r)
					}
				}
				in.Parameters = &awsddb.BatchWriteItemInput{RequestItems: sent}
				out, md, err := next.HandleInitialize(ctx, in)
				f.end(ws, func(i int) bool { return err == nil && i < keep })
				if err == nil && keep < len(reqs) {
					res := out.Result.(*awsddb.BatchWriteItemOutput)
					if res.UnprocessedItems == nil {
						res.UnprocessedItems = map[string][]types.WriteRequest{}
					}
					for tb, rs := range held {
						res.UnprocessedItems[tb] = append(res.UnprocessedItems[tb], rs...)
					}
					f.unprocessed.Add(int64(len(reqs) - keep))
				}
				return out, md, err
			case *awsddb.PutItemInput:
				if aws.ToString(p.TableName) == "cdcd_checkpoints" {
					break
				}
				ws := []write{{itemKey(aws.ToString(p.TableName), keyOf(aws.ToString(p.TableName), p.Item)), attr(p.Item["cdcd_version"])}}
				f.begin(ws)
				out, md, err := next.HandleInitialize(ctx, in)
				f.end(ws, func(int) bool { return err == nil })
				return out, md, err
			case *awsddb.UpdateItemInput:
				ws := []write{{itemKey(aws.ToString(p.TableName), p.Key), attr(p.ExpressionAttributeValues[":v"])}}
				f.begin(ws)
				out, md, err := next.HandleInitialize(ctx, in)
				f.end(ws, func(int) bool { return err == nil })
				return out, md, err
			case *awsddb.DeleteItemInput:
				ws := []write{{itemKey(aws.ToString(p.TableName), p.Key), ""}}
				f.begin(ws)
				out, md, err := next.HandleInitialize(ctx, in)
				f.end(ws, func(int) bool { return err == nil })
				return out, md, err
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
}

// addFinalize runs per attempt, after the retryer: on rate of attempts it
// answers with a throttling error (before sending) or, rarely, fails after
// the server applied the call (a lost response), both retried.
func (f *faults) addFinalize(st *middleware.Stack) error {
	return st.Finalize.Insert(middleware.FinalizeMiddlewareFunc("cdcd-throttle",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if f.roll() {
				f.throttled.Add(1)
				return middleware.FinalizeOutput{}, middleware.Metadata{}, &smithy.GenericAPIError{
					Code: "ProvisionedThroughputExceededException", Message: "injected by the test", Fault: smithy.FaultServer}
			}
			out, md, err := next.HandleFinalize(ctx, in)
			if err == nil && f.roll() && f.roll() {
				return out, md, &smithy.GenericAPIError{Code: "RequestTimeoutException", Message: "injected lost response", Fault: smithy.FaultServer}
			}
			return out, md, err
		}), "Retry", middleware.After)
}

// keyOf is the key attributes of the test tables' items: partition key n
// for public_numbered, id for the others.
func keyOf(table string, item map[string]types.AttributeValue) map[string]types.AttributeValue {
	if table == "public_numbered" {
		return map[string]types.AttributeValue{"n": item["n"]}
	}
	return map[string]types.AttributeValue{"id": item["id"]}
}

func (f *faults) check(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Empty(t, f.problems)
	require.Empty(t, f.inflight)
}
