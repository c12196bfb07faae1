package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// Sink writes apply batches to DynamoDB. Apply and Close are called from one
// goroutine (the apply worker's); Stats is safe for concurrent use.
type Sink struct {
	cfg    Config
	log    *slog.Logger
	client *dynamodb.Client
	conv   *converter
	rels   map[*change.Relation]*relPlan
	tables map[string]*table
	col    collapser

	ck checkpoint
	// replayHW is the checkpoint's high water when the sink opened: changes
	// committed at or before it may be stored already, so they are written
	// conditionally (the replay window, doc.go).
	replayHW change.LSN

	// cont is the source transaction a Partial batch left open: the next
	// batch continues it, and its changes' positions continue from next.
	cont struct {
		active bool
		xid    uint32
		next   int
	}

	dead   *os.File
	deadMu sync.Mutex

	lastThrottleLog atomic.Int64
	stats           struct {
		items, unprocessed, throttled, retried, skipped, deadLetters atomic.Uint64
	}
}

var (
	_ sink.Sink          = (*Sink)(nil)
	_ sink.PositionStore = (*Sink)(nil)
)

// Stats counts what the sink did in this session.
type Stats struct {
	// Items written (put, updated or deleted) and acknowledged.
	Items uint64
	// Unprocessed counts items DynamoDB returned as UnprocessedItems (each
	// was retried).
	Unprocessed uint64
	// Throttled counts calls refused by throttling (each was retried).
	Throttled uint64
	// Retried counts other failed calls retried by the sink after the SDK's
	// own attempts.
	Retried uint64
	// Skipped counts conditional writes of the replay window that found a
	// newer version stored.
	Skipped uint64
	// DeadLetters counts items over 400 KB recorded in the dead-letter file.
	DeadLetters uint64
}

// New opens the sink: an SDK client on the AWS default credential chain,
// the checkpoint table (created when missing) and the checkpoint item, whose
// high water opens the replay window (crash-safety step 1 in doc.go).
func New(ctx context.Context, cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dynamodb sink: %w", err)
	}
	cfg = cfg.withDefaults()
	client, err := newClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &Sink{
		cfg: cfg, log: cfg.Logger, client: client, conv: newConverter(cfg.JSON == JSONString),
		rels: map[*change.Relation]*relPlan{}, tables: map[string]*table{},
	}
	s.col = collapser{s: s, byKey: map[string]*op{}}
	if err := s.ensureCheckpointTable(ctx); err != nil {
		return nil, err
	}
	if s.ck, err = s.readCheckpoint(ctx); err != nil {
		return nil, err
	}
	s.replayHW = s.ck.hw
	if cfg.DeadLetter != "" {
		if s.dead, err = openDeadLetter(cfg.DeadLetter); err != nil {
			return nil, fmt.Errorf("dynamodb sink %s: open dead_letter file: %w", cfg.Name, err)
		}
	}
	s.log.Info("dynamodb sink open", "endpoint", cfg.Endpoint, "checkpoint_table", cfg.CheckpointTable,
		"position", s.ck.pos.EndLSN.String(), "replay_until", s.replayHW.String())
	return s, nil
}

// newClient builds the SDK client: the default credential chain, and a
// retryer without a retry quota (ratelimit.None: the default quota gives up
// under sustained throttling), MaxAttempts attempts per call and the
// configured backoff cap; Sink.call retries throttling beyond that.
func newClient(ctx context.Context, cfg Config) (*dynamodb.Client, error) {
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.MaxAttempts
				o.MaxBackoff = cfg.MaxBackoff
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("dynamodb sink %s: load AWS configuration: %w", cfg.Name, err)
	}
	if ac.Region == "" {
		return nil, fmt.Errorf("dynamodb sink %s: no AWS region: set region in the sink's config (or AWS_REGION)", cfg.Name)
	}
	return dynamodb.NewFromConfig(ac, func(o *dynamodb.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.APIOptions = append(o.APIOptions, cfg.APIOptions...)
	}), nil
}

// Client is the sink's SDK client (for checks and tests).
func (s *Sink) Client() *dynamodb.Client { return s.client }

// Stats returns the counters of this session.
func (s *Sink) Stats() Stats {
	return Stats{
		Items: s.stats.items.Load(), Unprocessed: s.stats.unprocessed.Load(), Throttled: s.stats.throttled.Load(),
		Retried: s.stats.retried.Load(), Skipped: s.stats.skipped.Load(), DeadLetters: s.stats.deadLetters.Load(),
	}
}

// Position reads the checkpoint item (crash-safety step 1).
func (s *Sink) Position(ctx context.Context) (sink.Position, error) {
	ck, err := s.readCheckpoint(ctx)
	if err != nil {
		return sink.Position{}, err
	}
	return ck.pos, nil
}

// commitLSN is the LSN that orders a transaction's changes: its commit
// record's (for a Partial batch, the commit LSN the BEGIN announced).
func commitLSN(tx *change.Tx) change.LSN {
	if tx == nil {
		return 0
	}
	if tx.CommitLSN != 0 {
		return tx.CommitLSN
	}
	return tx.FinalLSN
}

// Apply writes the batch (crash-safety steps 2–4 in doc.go) and returns once
// every item is acknowledged and the checkpoint item records the batch.
func (s *Sink) Apply(ctx context.Context, b *sink.Batch) error {
	var hw change.LSN
	for _, tx := range b.Txs {
		hw = max(hw, commitLSN(tx.Tx))
	}
	// Step 2: raise the high water before sending anything newer.
	if hw > s.ck.hw {
		if err := s.storeCheckpoint(ctx, checkpoint{pos: s.ck.pos, hw: hw}); err != nil {
			return err
		}
	}
	// Step 3: collapse per key and write.
	c := &s.col
	c.reset()
	for i, tx := range b.Txs {
		seq := 0
		if i == 0 && s.cont.active && tx.Tx != nil && tx.Tx.XID == s.cont.xid {
			seq = s.cont.next
		}
		lsn := commitLSN(tx.Tx)
		for _, ch := range tx.Changes {
			switch ch.Op {
			case change.OpInsert, change.OpUpdate, change.OpDelete:
				if err := c.add(ctx, ch, lsn, seq); err != nil {
					return err
				}
			case change.OpTruncate:
				if err := s.write(ctx, c.ops); err != nil {
					return err
				}
				c.reset()
				if err := s.truncate(ctx, ch.Truncate, lsn, seq); err != nil {
					return err
				}
			}
			seq++
		}
		if b.Partial && i == len(b.Txs)-1 && tx.Tx != nil {
			s.cont.active, s.cont.xid, s.cont.next = true, tx.Tx.XID, seq
		}
	}
	if !b.Partial {
		s.cont.active = false
	}
	if err := s.write(ctx, c.ops); err != nil {
		return err
	}
	c.reset()
	// Step 4: every item is acknowledged: the checkpoint may say so.
	if b.Snapshot || b.Position.Seq == 0 || b.Position == s.ck.pos {
		return nil
	}
	return s.storeCheckpoint(ctx, checkpoint{pos: b.Position, hw: s.ck.hw})
}

// truncate deletes every item of the truncated tables (DynamoDB has no
// TRUNCATE): a scan of their keys, deleted in batches. The deletes carry the
// TRUNCATE's version, so in the replay window they are conditional and an
// item a later change already wrote survives.
func (s *Sink) truncate(ctx context.Context, t *change.Truncate, lsn change.LSN, seq int) error {
	for _, rel := range t.Relations {
		p, err := s.plan(ctx, rel)
		if err != nil {
			return err
		}
		proj := "#pk"
		names := map[string]string{"#pk": p.t.pk}
		if p.t.sk != "" {
			proj += ", #sk"
			names["#sk"] = p.t.sk
		}
		pages := dynamodb.NewScanPaginator(s.client, &dynamodb.ScanInput{TableName: aws.String(p.t.name),
			ProjectionExpression: aws.String(proj), ExpressionAttributeNames: names})
		n := 0
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return classify(fmt.Errorf("dynamodb sink %s: truncate %s: scan: %w", s.cfg.Name, p.t.name, err))
			}
			ops := make([]*op, len(page.Items))
			for i, key := range page.Items {
				ops[i] = &op{kind: opDelete, p: p, key: key, lsn: lsn, seq: seq}
			}
			if err := s.write(ctx, ops); err != nil {
				return err
			}
			n += len(ops)
		}
		s.log.Info("dynamodb: truncated table by deleting its items", "table", p.t.name, "items", n)
	}
	return nil
}

// Close closes the dead-letter file. Every Apply has finished its writes.
func (s *Sink) Close(context.Context) error {
	if s.dead != nil {
		return s.dead.Close()
	}
	return nil
}

// terminalCodes are the API errors a retry cannot cure.
var terminalCodes = map[string]bool{
	"ValidationException": true, "ResourceNotFoundException": true, "AccessDeniedException": true,
	"UnrecognizedClientException": true, "InvalidSignatureException": true, "MissingAuthenticationTokenException": true,
	"IncompleteSignature": true, "ItemCollectionSizeLimitExceededException": true, "SerializationException": true,
}

func isValidation(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "ValidationException"
}

// classify marks err retriable unless retrying cannot cure it: validation,
// missing tables, credentials and permissions.
func classify(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) && terminalCodes[ae.ErrorCode()] {
		return err
	}
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return err
	}
	if msg := err.Error(); strings.Contains(msg, "retrieve credentials") || strings.Contains(msg, "refresh cached credentials") {
		return fmt.Errorf("%w (set AWS credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role)", err)
	}
	return sink.Retriable(err)
}
