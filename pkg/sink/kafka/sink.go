package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// Sink writes apply batches to Kafka. Apply and Close are called from one
// goroutine (the apply worker's); Stats is safe for concurrent use.
type Sink struct {
	cfg    Config
	log    *slog.Logger
	cl     *kgo.Client
	adm    *kadm.Client
	enc    *encoder
	mem    arena
	topics map[string]int32 // known topic → partitions
	eos    bool

	inTxn bool
	// cont is the source transaction a Partial batch left open: the next
	// batch continues it, and its changes' tx_seq continue from next.
	cont struct {
		active bool
		xid    uint32
		next   int
	}
	broken error // set by a failure: the sink must be reopened

	errMu    sync.Mutex
	firstErr error // first failed record since the last check

	promise func(*kgo.Record, error)
	stats   struct{ records, bytes, txns, aborts atomic.Uint64 }
}

var (
	_ sink.Sink          = (*Sink)(nil)
	_ sink.PositionStore = (*Sink)(nil)
	_ sink.BatchPacer    = (*Sink)(nil)
)

// Stats counts what the sink produced in this session.
type Stats struct {
	// Records and Bytes (keys + values) produced, including aborted ones.
	Records, Bytes uint64
	// Transactions committed (exactly-once) or batches flushed (at-least-once).
	Transactions uint64
	// Aborts counts aborted transactions.
	Aborts uint64
}

// New connects to the cluster, creates the checkpoint topic if missing and,
// for exactly-once, initializes the transactional producer, which fences a
// previous producer with the same transactional id and aborts its open
// transaction (crash-safety step 1 in doc.go).
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts, err := cfg.clientOpts(kgoLogger{log})
	if err != nil {
		return nil, fmt.Errorf("kafka sink %s: %w", cfg.Name, err)
	}
	comp, _ := codec(cfg.Compression)
	opts = append(opts,
		kgo.ProducerBatchCompression(comp),
		kgo.ProducerLinger(cfg.Linger),
		kgo.ProducerBatchMaxBytes(cfg.BatchMaxBytes),
		kgo.MaxBufferedRecords(cfg.MaxBufferedRecords),
		kgo.MaxBufferedBytes(cfg.MaxBufferedBytes),
		kgo.RecordPartitioner(partitioner{kgo.StickyKeyPartitioner(nil)}),
	)
	eos := cfg.Delivery == ExactlyOnce
	if eos {
		opts = append(opts, kgo.TransactionalID(cfg.TransactionalID), kgo.TransactionTimeout(cfg.TransactionTimeout))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka sink %s: %w", cfg.Name, err)
	}
	s := &Sink{
		cfg: cfg, log: log, cl: cl, adm: kadm.NewClient(cl), enc: newEncoder(cfg),
		topics: map[string]int32{}, eos: eos,
	}
	s.promise = func(_ *kgo.Record, err error) {
		if err != nil {
			s.errMu.Lock()
			if s.firstErr == nil {
				s.firstErr = err
			}
			s.errMu.Unlock()
		}
	}
	if err := s.start(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	return s, nil
}

func (s *Sink) start(ctx context.Context) error {
	if err := s.ensureCheckpointTopic(ctx); err != nil {
		return err
	}
	if _, _, err := s.cl.ProducerID(ctx); err != nil {
		if s.eos {
			return classify(fmt.Errorf("initialize transactional producer %q (brokers without transactions need delivery: at-least-once): %w", s.cfg.TransactionalID, err))
		}
		return classify(fmt.Errorf("initialize idempotent producer: %w", err))
	}
	s.log.Info("kafka sink open", "brokers", s.cfg.Brokers, "delivery", s.cfg.Delivery,
		"transactional_id", s.txnID(), "checkpoint_topic", s.cfg.CheckpointTopic)
	return nil
}

func (s *Sink) txnID() string {
	if s.eos {
		return s.cfg.TransactionalID
	}
	return ""
}

// Stats returns the counters of this session.
func (s *Sink) Stats() Stats {
	return Stats{
		Records: s.stats.records.Load(), Bytes: s.stats.bytes.Load(),
		Transactions: s.stats.txns.Load(), Aborts: s.stats.aborts.Load(),
	}
}

// Position reads the sink's last committed position from the checkpoint
// topic (crash-safety step 2).
func (s *Sink) Position(ctx context.Context) (sink.Position, error) {
	return s.readPosition(ctx)
}

// MinBatchDelay is Config.MinBatchDelay (sink.BatchPacer).
func (s *Sink) MinBatchDelay() time.Duration { return s.cfg.MinBatchDelay }

// Apply produces the batch. A complete batch ends with its checkpoint
// record, a Flush and, for exactly-once, the commit of the Kafka transaction;
// a Partial batch leaves the transaction open for the next one. Any failure
// aborts the transaction and returns a retriable error: the worker reopens
// the sink and resumes from the committed checkpoint.
func (s *Sink) Apply(ctx context.Context, b *sink.Batch) error {
	if s.broken != nil {
		return sink.Retriable(fmt.Errorf("kafka sink %s must be reopened after: %w", s.cfg.Name, s.broken))
	}
	if s.eos && !s.inTxn {
		if err := s.cl.BeginTransaction(); err != nil {
			return s.fail(ctx, "begin kafka transaction", err)
		}
		s.inTxn = true
	}
	now := s.cfg.Now().UnixMilli()
	for i, tx := range b.Txs {
		seq := 0
		if i == 0 && s.cont.active && tx.Tx != nil && tx.Tx.XID == s.cont.xid {
			seq = s.cont.next
		}
		hdr := s.txHeaders(tx.Tx)
		for _, c := range tx.Changes {
			emit := s.change
			if b.Snapshot && c.Op == change.OpInsert {
				emit = s.snapshotRow // Debezium's op "r"
			}
			if err := emit(ctx, c, tx.Tx, hdr, seq, now); err != nil {
				return s.fail(ctx, "encode change", err)
			}
			seq++
		}
		if b.Partial && i == len(b.Txs)-1 && tx.Tx != nil {
			s.cont.active, s.cont.xid, s.cont.next = true, tx.Tx.XID, seq
		}
		if err := s.produceErr(); err != nil {
			return s.fail(ctx, "produce", err)
		}
	}
	if b.Partial {
		return nil
	}
	s.cont.active = false
	if s.eos {
		s.checkpoint(ctx, b.Position, now) // step 3: in the same transaction
	}
	if err := s.cl.Flush(ctx); err != nil {
		return s.fail(ctx, "flush", err)
	}
	if err := s.produceErr(); err != nil {
		return s.fail(ctx, "produce", err)
	}
	s.mem.release() // every record is acknowledged: its memory is free
	if s.eos {
		s.inTxn = false
		if err := s.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			// The commit may or may not have happened: never retry it.
			// Abort (which fences anything still ongoing) and let the
			// reopened sink read the outcome from the checkpoint topic.
			s.inTxn = true
			return s.fail(ctx, "commit kafka transaction (outcome unknown)", err)
		}
	} else {
		// Acknowledged: now the checkpoint may say so. It rides with the
		// next batch's Flush (or Close's); losing it re-sends this batch.
		// It outlives this call, so not under its context.
		s.checkpoint(context.WithoutCancel(ctx), b.Position, now)
	}
	s.stats.txns.Add(1)
	return nil
}

// fail aborts the open transaction (crash-safety step 4), marks the sink
// broken and returns err classified.
func (s *Sink) fail(ctx context.Context, doing string, err error) error {
	err = fmt.Errorf("kafka sink %s: %s: %w", s.cfg.Name, doing, err)
	s.broken = err
	s.cont.active = false
	if s.eos && s.inTxn {
		s.log.Warn("aborting the kafka transaction; apply resumes from the last committed checkpoint", "err", err)
		s.abort(ctx)
	}
	return classify(err)
}

// abort drops buffered records and aborts the transaction, best effort: if
// it fails, the next producer's InitProducerID (or the transaction timeout)
// aborts it on the broker.
func (s *Sink) abort(ctx context.Context) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	s.inTxn = false
	s.stats.aborts.Add(1)
	if err := s.cl.AbortBufferedRecords(actx); err != nil {
		s.log.Warn("dropping buffered kafka records failed", "err", err)
	}
	if err := s.cl.EndTransaction(actx, kgo.TryAbort); err != nil {
		s.log.Warn("kafka abort failed; the next open fences the transaction", "err", err)
	}
}

func (s *Sink) produceErr() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	err := s.firstErr
	s.firstErr = nil
	return err
}

// Close aborts an open transaction (a Partial batch never committed) or, for
// at-least-once, flushes the last checkpoint record, then disconnects.
func (s *Sink) Close(ctx context.Context) error {
	defer s.cl.Close()
	if s.eos && s.inTxn {
		s.log.Info("closing with an open kafka transaction: aborting it")
		s.abort(ctx)
		return nil
	}
	if !s.eos && s.broken == nil {
		if err := s.cl.Flush(ctx); err != nil {
			return fmt.Errorf("kafka sink %s: flush at close: %w", s.cfg.Name, err)
		}
	}
	return nil
}

// txHeaders are the headers shared by every record of a transaction.
func (s *Sink) txHeaders(tx *change.Tx) []kgo.RecordHeader {
	if tx == nil {
		return nil
	}
	commit := tx.CommitLSN
	if commit == 0 {
		commit = tx.FinalLSN // a Partial batch has the BEGIN's announcement
	}
	h := s.mem.headers(2)
	h[0] = kgo.RecordHeader{Key: "cdcd.txid", Value: s.mem.end(strconv.AppendUint(s.mem.begin(), uint64(tx.XID), 10))}
	h[1] = kgo.RecordHeader{Key: "cdcd.commit_lsn", Value: s.mem.copy([]byte(commit.String()))}
	return h
}

// classify marks err retriable unless retrying cannot cure it.
func classify(err error) error {
	if isTerminal(err) {
		return err
	}
	return sink.Retriable(err)
}

// terminalErrors are the errors a retry cannot cure: authorization and
// configuration problems, records too large, changes that cannot be encoded.
var terminalErrors = []error{
	errEncode,
	kerr.TopicAuthorizationFailed, kerr.TransactionalIDAuthorizationFailed, kerr.ClusterAuthorizationFailed,
	kerr.SaslAuthenticationFailed, kerr.UnsupportedSaslMechanism, kerr.IllegalSaslState,
	kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidTopicException, kerr.InvalidTransactionTimeout,
	kerr.PolicyViolation, kerr.InvalidReplicationFactor,
}

func isTerminal(err error) bool {
	for _, t := range terminalErrors {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
