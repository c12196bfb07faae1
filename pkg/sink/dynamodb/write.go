package dynamodb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/errgroup"

	"github.com/cdcd-io/cdcd/pkg/sink"
)

// DynamoDB's limits.
const (
	batchItems     = 25       // items per BatchWriteItem
	batchBytes     = 16 << 20 // bytes per BatchWriteItem request
	maxItemBytes   = 400 << 10
	backoffBaseDur = 25 * time.Millisecond
)

// condition makes a write win only over an older stored version (the
// replay window, doc.go).
const condition = "attribute_not_exists(#v) OR #v < :v"

// write sends a batch's ops: puts and deletes in BatchWriteItem calls of up
// to 25 items, updates and (in the replay window) conditional writes one
// item per call, Parallelism calls in flight. Each key is in exactly one op,
// so a key is never in two calls; write returns once every op is
// acknowledged (or the first error).
func (s *Sink) write(ctx context.Context, ops []*op) error {
	// Old items of key changes are read before anything of the batch is
	// written.
	for _, o := range ops {
		if o.fetch != nil {
			if err := s.fetchBase(ctx, o); err != nil {
				return err
			}
		}
	}
	w := s.newWriter(ctx)
	for _, o := range ops {
		if err := w.add(o); err != nil {
			return w.abort(err)
		}
	}
	return w.wait()
}

// writer sends ops as they come, Parallelism calls in flight (adding blocks
// while they are): the caller must not give it two ops of one key.
type writer struct {
	s          *Sink
	g          *errgroup.Group
	ctx        context.Context
	chunk      []types.WriteRequest
	chunkOps   []*op
	chunkBytes int
	chunkIDs   map[string]bool // keys in chunk: BatchWriteItem refuses duplicates
}

func (s *Sink) newWriter(ctx context.Context) *writer {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.Parallelism)
	return &writer{s: s, g: g, ctx: gctx}
}

// add sends o, in the next BatchWriteItem call or a call of its own.
func (w *writer) add(o *op) error {
	if w.ctx.Err() != nil {
		return errStopped
	}
	s := w.s
	var item map[string]types.AttributeValue
	size := 0
	if o.kind != opDelete {
		item = s.item(o)
		if size = itemSize(item); size > maxItemBytes {
			return s.tooLarge(o, item, size)
		}
	}
	cond := s.replayHW != 0 && o.lsn != 0 && o.lsn <= s.replayHW
	if o.kind == opUpdate || cond {
		w.g.Go(func() error { return s.single(w.ctx, o, item, cond) })
		return nil
	}
	if len(w.chunk) == batchItems || w.chunkBytes+size > batchBytes || (o.id != "" && w.chunkIDs[o.id]) {
		// (A key twice comes only from a snapshot whose configured keys
		// are not unique in the source: the last row read wins.)
		w.flush()
	}
	var req types.WriteRequest
	if o.kind == opDelete {
		req.DeleteRequest = &types.DeleteRequest{Key: o.key}
	} else {
		req.PutRequest = &types.PutRequest{Item: item}
	}
	w.chunk, w.chunkOps = append(w.chunk, req), append(w.chunkOps, o)
	w.chunkBytes += size
	if w.chunkIDs == nil {
		w.chunkIDs = make(map[string]bool, batchItems)
	}
	w.chunkIDs[o.id] = true
	return nil
}

func (w *writer) flush() {
	if len(w.chunk) == 0 {
		return
	}
	reqs, ops := w.chunk, w.chunkOps
	w.chunk, w.chunkOps, w.chunkBytes = nil, nil, 0
	clear(w.chunkIDs)
	w.g.Go(func() error { return w.s.batchWrite(w.ctx, reqs, ops) })
}

// errStopped is add's error once a call has failed or the context ended.
var errStopped = errors.New("writer stopped")

// abort waits for the calls in flight after add (or the caller) failed with
// err, and returns the error to report: the failed call's for errStopped.
func (w *writer) abort(err error) error {
	werr := w.g.Wait()
	if errors.Is(err, errStopped) {
		if werr != nil {
			return werr
		}
		return w.ctx.Err()
	}
	if werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

// wait sends what is left and waits for every call.
func (w *writer) wait() error {
	w.flush()
	return w.g.Wait()
}

// item is the full item of a put, or the attributes of an update.
func (s *Sink) item(o *op) map[string]types.AttributeValue {
	var item map[string]types.AttributeValue
	if s.cfg.Document == Nested {
		item = maps.Clone(o.key)
		item[s.cfg.DocumentAttribute] = &types.AttributeValueMemberM{Value: o.cols}
	} else {
		item = make(map[string]types.AttributeValue, len(o.cols)+1)
		maps.Copy(item, o.cols)
		maps.Copy(item, o.key) // the key in the table's attribute types
	}
	item[s.cfg.VersionAttribute] = &types.AttributeValueMemberN{Value: o.version()}
	return item
}

// batchWrite writes one BatchWriteItem call's requests, retrying
// UnprocessedItems with capped exponential backoff and jitter until every
// one is written: no later change to these keys is sent before.
func (s *Sink) batchWrite(ctx context.Context, reqs []types.WriteRequest, ops []*op) error {
	pending := map[string][]types.WriteRequest{}
	for i, r := range reqs {
		t := ops[i].p.t.name
		pending[t] = append(pending[t], r)
	}
	for attempt := 0; ; attempt++ {
		var out *dynamodb.BatchWriteItemOutput
		err := s.call(ctx, "BatchWriteItem", func() error {
			var err error
			out, err = s.client.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: pending})
			return err
		})
		if err != nil {
			return s.callErr("write a batch of items to "+tablesOf(pending), err, ops)
		}
		n := 0
		for _, rs := range out.UnprocessedItems {
			n += len(rs)
		}
		s.stats.items.Add(uint64(countReqs(pending) - n))
		if n == 0 {
			return nil
		}
		s.stats.unprocessed.Add(uint64(n))
		pending = out.UnprocessedItems
		if err := sleep(ctx, s.backoff(attempt)); err != nil {
			return err
		}
	}
}

func countReqs(m map[string][]types.WriteRequest) int {
	n := 0
	for _, rs := range m {
		n += len(rs)
	}
	return n
}

func tablesOf(m map[string][]types.WriteRequest) string {
	s := ""
	for t := range m {
		if s != "" {
			s += ", "
		}
		s += t
	}
	return s
}

// single writes one op in its own call: UpdateItem for an update, PutItem or
// DeleteItem for a conditional write. A conditional write that finds a newer
// version stored is skipped: the item already holds a later state.
func (s *Sink) single(ctx context.Context, o *op, item map[string]types.AttributeValue, cond bool) error {
	names := map[string]string{"#v": s.cfg.VersionAttribute}
	values := map[string]types.AttributeValue{":v": &types.AttributeValueMemberN{Value: o.version()}}
	var condExpr *string
	if cond {
		condExpr = aws.String(condition)
	}
	table := aws.String(o.p.t.name)
	var what string
	var f func() error
	switch o.kind {
	case opDelete:
		what = "delete"
		f = func() error {
			_, err := s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: table, Key: o.key,
				ConditionExpression: condExpr, ExpressionAttributeNames: names, ExpressionAttributeValues: values})
			return err
		}
		if !cond {
			f = func() error {
				_, err := s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: table, Key: o.key})
				return err
			}
		}
	case opPut:
		what = "put"
		f = func() error {
			_, err := s.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: table, Item: item,
				ConditionExpression: condExpr, ExpressionAttributeNames: names, ExpressionAttributeValues: values})
			return err
		}
	default:
		what = "update"
		expr := "SET "
		i := 0
		prefix := ""
		if s.cfg.Document == Nested {
			names["#d"] = s.cfg.DocumentAttribute
			prefix = "#d."
		}
		for name, av := range o.cols {
			if s.cfg.Document != Nested && (name == o.p.t.pk || name == o.p.t.sk) {
				continue // key attributes cannot be updated, and are equal
			}
			n, v := "#a"+strconv.Itoa(i), ":a"+strconv.Itoa(i)
			names[n], values[v] = name, av
			expr += prefix + n + " = " + v + ", "
			i++
		}
		expr += "#v = :v"
		if s.cfg.Document == Nested {
			// A missing item has no map to set paths in: skip it, as a
			// deleted row's partial update (doc.go).
			c := "attribute_exists(#d)"
			if cond {
				c += " AND (" + condition + ")"
			}
			condExpr = aws.String(c)
		}
		f = func() error {
			_, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: table, Key: o.key,
				UpdateExpression: aws.String(expr), ConditionExpression: condExpr,
				ExpressionAttributeNames: names, ExpressionAttributeValues: values})
			return err
		}
	}
	err := s.call(ctx, what, f)
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		s.stats.skipped.Add(1)
		return nil
	}
	if err != nil && isValidation(err) && strings.Contains(err.Error(), "size") {
		// An update that makes the stored item too large: only the
		// server can tell.
		return s.tooLarge(o, item, -1)
	}
	if err != nil {
		return s.callErr(what+" item "+o.describe(), err, nil)
	}
	s.stats.items.Add(1)
	return nil
}

// fetchBase completes a put whose key changed with the columns its old
// item holds and the change did not send (unchanged TOAST).
func (s *Sink) fetchBase(ctx context.Context, o *op) error {
	f := o.fetch
	var out *dynamodb.GetItemOutput
	err := s.call(ctx, "GetItem", func() error {
		var err error
		out, err = s.client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(f.p.t.name), Key: f.key, ConsistentRead: aws.Bool(true)})
		return err
	})
	if err != nil {
		return s.callErr("read item "+f.describe()+" (the old key of a key change)", err, nil)
	}
	base := out.Item
	if s.cfg.Document == Nested {
		if d, ok := base[s.cfg.DocumentAttribute].(*types.AttributeValueMemberM); ok {
			base = d.Value
		} else {
			base = nil
		}
	} else {
		base = maps.Clone(base)
		delete(base, s.cfg.VersionAttribute)
	}
	if base == nil {
		s.log.Warn("dynamodb: the old item of a key change is missing: unchanged TOASTed columns stay unset", "item", f.describe())
	}
	o.cols = merged(merged(base, f.cols), o.cols)
	o.fetch = nil
	return nil
}

// tooLarge handles an item over 400 KB: recorded in the dead-letter file
// when one is configured, otherwise an error naming the table and key.
// A negative size means DynamoDB refused the item as too large.
func (s *Sink) tooLarge(o *op, item map[string]types.AttributeValue, size int) error {
	if s.dead == nil {
		what := fmt.Sprintf("is %d bytes", size)
		if size < 0 {
			what = "would grow"
		}
		return fmt.Errorf("dynamodb sink %s: item %s %s, over DynamoDB's 400 KB item limit (set dead_letter: true to record such items in the trail directory and go on)",
			s.cfg.Name, o.describe(), what)
	}
	rec := map[string]any{
		"sink": s.cfg.Name, "table": o.p.t.name, "source": o.p.rel.QualifiedName(), "key": jsonAttrs(o.key),
		"version": o.version(), "bytes": size, "error": "item over 400 KB", "item": jsonAttrs(item),
		"at": time.Now().UTC().Format(time.RFC3339Nano),
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("dynamodb sink %s: dead letter: %w", s.cfg.Name, err)
	}
	s.deadMu.Lock()
	defer s.deadMu.Unlock()
	if _, err := s.dead.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("dynamodb sink %s: write dead letter %s: %w", s.cfg.Name, s.cfg.DeadLetter, err)
	}
	if err := s.dead.Sync(); err != nil {
		return fmt.Errorf("dynamodb sink %s: sync dead letter %s: %w", s.cfg.Name, s.cfg.DeadLetter, err)
	}
	s.stats.deadLetters.Add(1)
	s.log.Warn("dynamodb: item over 400 KB recorded in the dead-letter file and skipped", "item", o.describe(), "bytes", size, "file", s.cfg.DeadLetter)
	return nil
}

func openDeadLetter(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
}

// jsonAttrs is DynamoDB JSON ({"S":"x"}, {"N":"1"}, …) of attributes.
func jsonAttrs(m map[string]types.AttributeValue) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = jsonAttrOf(v)
	}
	return out
}

func jsonAttrOf(v types.AttributeValue) any {
	switch x := v.(type) {
	case *types.AttributeValueMemberS:
		return map[string]any{"S": x.Value}
	case *types.AttributeValueMemberN:
		return map[string]any{"N": x.Value}
	case *types.AttributeValueMemberB:
		return map[string]any{"B": x.Value}
	case *types.AttributeValueMemberBOOL:
		return map[string]any{"BOOL": x.Value}
	case *types.AttributeValueMemberNULL:
		return map[string]any{"NULL": true}
	case *types.AttributeValueMemberM:
		return map[string]any{"M": jsonAttrs(x.Value)}
	case *types.AttributeValueMemberL:
		l := make([]any, len(x.Value))
		for i, e := range x.Value {
			l[i] = jsonAttrOf(e)
		}
		return map[string]any{"L": l}
	}
	return nil
}

// itemSize is an item's size by DynamoDB's rules: attribute names plus
// values (strings and binaries by length, numbers about one byte per two
// digits, 3 bytes per map or list plus 1 per element).
func itemSize(m map[string]types.AttributeValue) int {
	n := 0
	for k, v := range m {
		n += len(k) + attrSize(v)
	}
	return n
}

func attrSize(v types.AttributeValue) int {
	switch x := v.(type) {
	case *types.AttributeValueMemberS:
		return len(x.Value)
	case *types.AttributeValueMemberN:
		return (len(x.Value)+1)/2 + 1
	case *types.AttributeValueMemberB:
		return len(x.Value)
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberM:
		return 3 + len(x.Value) + itemSize(x.Value)
	case *types.AttributeValueMemberL:
		n := 3 + len(x.Value)
		for _, e := range x.Value {
			n += attrSize(e)
		}
		return n
	}
	return 0
}

// throttleCodes are the error codes of a table or account that is merely
// slow: retried without giving up.
var throttleCodes = map[string]bool{
	"ProvisionedThroughputExceededException": true, "ThrottlingException": true,
	"RequestLimitExceeded": true, "Throttling": true, "TooManyRequestsException": true,
}

func isThrottle(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && throttleCodes[ae.ErrorCode()]
}

// call runs one API call. Throttling is retried without limit (the SDK's
// retryer has already retried it a few times): a table that is merely slow
// slows the sink, it never stops it. Each throttled attempt is counted, and
// logged at most every 10 seconds. Other retriable failures the SDK gave up
// on (lost responses, 5xx) are retried MaxAttempts more times here: every
// write is idempotent, and failing the batch would make the reopened sink
// replay it item by item (the replay window).
func (s *Sink) call(ctx context.Context, what string, f func() error) error {
	transient := 0
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		if !isThrottle(err) {
			var ccf *types.ConditionalCheckFailedException
			if ctx.Err() != nil || errors.As(err, &ccf) || !sink.IsRetriable(classify(err)) || transient >= s.cfg.MaxAttempts {
				return err
			}
			transient++
			s.stats.retried.Add(1)
			s.log.Warn("dynamodb call failed: retrying", "call", what, "attempt", transient, "err", err)
		} else {
			n := s.stats.throttled.Add(1)
			now := time.Now().UnixNano()
			if last := s.lastThrottleLog.Load(); now-last > int64(10*time.Second) && s.lastThrottleLog.CompareAndSwap(last, now) {
				s.log.Warn("dynamodb throttling: retrying without giving up", "call", what, "attempt", attempt+1, "throttled_total", n, "err", err)
			}
		}
		if err := sleep(ctx, s.backoff(attempt)); err != nil {
			return err
		}
	}
}

// backoff is capped exponential backoff with jitter: a random wait between
// half and all of min(MaxBackoff, 25ms·2^attempt).
func (s *Sink) backoff(attempt int) time.Duration {
	d := s.cfg.MaxBackoff
	if attempt < 20 {
		d = min(d, backoffBaseDur<<attempt)
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// callErr wraps a failed call's error, classified; for a batch that failed
// validation it names the items' keys.
func (s *Sink) callErr(doing string, err error, ops []*op) error {
	msg := fmt.Sprintf("dynamodb sink %s: %s", s.cfg.Name, doing)
	if isValidation(err) && len(ops) > 0 {
		keys := ""
		for i, o := range ops {
			if i == 3 {
				keys += fmt.Sprintf(" and %d more", len(ops)-3)
				break
			}
			if i > 0 {
				keys += "; "
			}
			keys += o.describe()
		}
		msg += " (items " + keys + ")"
	}
	return classify(fmt.Errorf("%s: %w", msg, err))
}
