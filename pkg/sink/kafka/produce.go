package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// errEncode marks a change that cannot be encoded: terminal.
var errEncode = errors.New("cannot encode change")

// change produces the records of one change (none for logical messages).
func (s *Sink) change(ctx context.Context, c *change.Change, tx *change.Tx, hdr []kgo.RecordHeader, seq int, now int64) error {
	lsn := c.LSN
	switch c.Op {
	case change.OpInsert:
		return s.row(ctx, 'c', c.Relation, nil, c.New, c.New, tx, hdr, seq, lsn, now)
	case change.OpUpdate:
		ri := s.enc.rel(c.Relation)
		if keyChanged(ri, c) {
			// Debezium's way: a delete under the old key (and its
			// tombstone), then a create under the new key.
			if err := s.row(ctx, 'd', c.Relation, c.Old, nil, c.Old, tx, hdr, seq, lsn, now); err != nil {
				return err
			}
			return s.row(ctx, 'c', c.Relation, nil, c.New, c.New, tx, hdr, seq, lsn, now)
		}
		keyRow := c.New
		if c.Old != nil && hasUnchangedKey(ri, c.New) {
			keyRow = c.Old
		}
		return s.row(ctx, 'u', c.Relation, c.Old, c.New, keyRow, tx, hdr, seq, lsn, now)
	case change.OpDelete:
		if c.Old == nil {
			return nil // REPLICA IDENTITY NOTHING: pgoutput sends no deletes
		}
		return s.row(ctx, 'd', c.Relation, c.Old, nil, c.Old, tx, hdr, seq, lsn, now)
	case change.OpTruncate:
		if s.cfg.SkipTruncate {
			return nil
		}
		for _, r := range c.Truncate.Relations {
			if err := s.truncate(ctx, r, tx, hdr, seq, lsn, now); err != nil {
				return err
			}
		}
	}
	return nil
}

func hasUnchangedKey(ri *relInfo, row change.Row) bool {
	for _, i := range ri.keys {
		if row[i].Kind == change.ValueUnchanged || row[i].Kind == change.ValueAbsent {
			return true
		}
	}
	return false
}

// row produces one row event (and, after a delete, its tombstone).
func (s *Sink) row(ctx context.Context, op byte, rel *change.Relation, before, after, keyRow change.Row,
	tx *change.Tx, hdr []kgo.RecordHeader, seq int, lsn change.LSN, now int64) error {
	ri := s.enc.rel(rel)
	if _, err := s.topic(ctx, ri.topic); err != nil {
		return err
	}
	kb, err := s.enc.appendKey(s.mem.begin(), ri, keyRow)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", errEncode, rel.QualifiedName(), err)
	}
	key := s.mem.end(kb)
	var value []byte
	switch {
	case s.cfg.Envelope == EnvDebezium:
		ev := event{op: op, before: before, after: after, tx: tx, lsn: lsn, nowMs: now}
		vb, err := s.enc.appendDebezium(s.mem.begin(), ri, &ev)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", errEncode, rel.QualifiedName(), err)
		}
		value = s.mem.end(vb)
	case op != 'd':
		vb, err := s.enc.appendRow(s.mem.begin(), ri, after)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", errEncode, rel.QualifiedName(), err)
		}
		value = s.mem.end(vb)
	default:
		s.enc.unchanged = s.enc.unchanged[:0]
	}
	s.produce(ctx, ri.topic, -1, key, value, s.headers(hdr, seq, op))
	if op == 'd' && s.cfg.Tombstones && s.cfg.Envelope == EnvDebezium && key != nil {
		s.produce(ctx, ri.topic, -1, key, nil, s.headers(hdr, seq, op))
	}
	return nil
}

// truncate writes the truncate event to every partition of the table's
// topic, so that it is ordered with every key's changes.
func (s *Sink) truncate(ctx context.Context, rel *change.Relation, tx *change.Tx, hdr []kgo.RecordHeader, seq int, lsn change.LSN, now int64) error {
	ri := s.enc.rel(rel)
	parts, err := s.topic(ctx, ri.topic)
	if err != nil {
		return err
	}
	var value []byte
	s.enc.unchanged = s.enc.unchanged[:0]
	if s.cfg.Envelope == EnvDebezium {
		ev := event{op: 't', tx: tx, lsn: lsn, nowMs: now}
		vb, err := s.enc.appendDebezium(s.mem.begin(), ri, &ev)
		if err != nil {
			return fmt.Errorf("%w: %w", errEncode, err)
		}
		value = s.mem.end(vb)
	}
	for p := range parts {
		s.produce(ctx, ri.topic, p, nil, value, s.headers(hdr, seq, 't'))
	}
	return nil
}

// headers returns the transaction headers plus the change's own.
func (s *Sink) headers(txh []kgo.RecordHeader, seq int, op byte) []kgo.RecordHeader {
	n := len(txh) + 1
	plain := s.cfg.Envelope == EnvPlain
	if plain {
		n++
		if len(s.enc.unchanged) > 0 {
			n++
		}
	}
	h := s.mem.headers(n)
	copy(h, txh)
	i := len(txh)
	h[i] = kgo.RecordHeader{Key: "cdcd.tx_seq", Value: s.mem.end(strconv.AppendInt(s.mem.begin(), int64(seq), 10))}
	if plain {
		i++
		h[i] = kgo.RecordHeader{Key: "cdcd.op", Value: opBytes[op]}
		if len(s.enc.unchanged) > 0 {
			i++
			h[i] = kgo.RecordHeader{Key: "cdcd.unchanged", Value: s.mem.copy([]byte(strings.Join(s.enc.unchanged, ",")))}
		}
	}
	return h
}

var opBytes = map[byte][]byte{'c': []byte("c"), 'u': []byte("u"), 'd': []byte("d"), 't': []byte("t")}

// produce sends a record asynchronously; failures are collected by the
// promise and checked per transaction and at Flush. partition ≥ 0 pins the
// partition (truncate fan-out); -1 partitions by key.
func (s *Sink) produce(ctx context.Context, topic string, partition int32, key, value []byte, hdr []kgo.RecordHeader) {
	r := s.mem.record()
	r.Topic, r.Key, r.Value, r.Headers = topic, key, value, hdr
	if partition >= 0 {
		r.Partition, r.Context = partition, pinned
	}
	s.stats.records.Add(1)
	s.stats.bytes.Add(uint64(len(key) + len(value)))
	s.cl.Produce(ctx, r, s.promise)
}

// checkpoint produces the position record (key = sink name).
func (s *Sink) checkpoint(ctx context.Context, p sink.Position, now int64) {
	b := append(s.mem.begin(), `{"sink":`...)
	b = appendString(b, []byte(s.cfg.Name))
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, p.Seq, 10)
	b = append(b, `,"end_lsn":"`...)
	b = append(b, p.EndLSN.String()...)
	b = append(b, `","ts_ms":`...)
	b = strconv.AppendInt(b, now, 10)
	b = append(b, '}')
	value := s.mem.end(b) // before the key takes the arena's free space
	s.produce(ctx, s.cfg.CheckpointTopic, -1, s.mem.copy([]byte(s.cfg.Name)), value, nil)
}

// pinned marks a record whose Partition is chosen by the sink.
var pinned = context.WithValue(context.Background(), pinnedKey{}, true)

type pinnedKey struct{}

// partitioner hashes keys like Kafka's Java client (murmur2), except for
// records the sink pins to a partition.
type partitioner struct{ kgo.Partitioner }

func (p partitioner) ForTopic(t string) kgo.TopicPartitioner {
	return topicPartitioner{p.Partitioner.ForTopic(t)}
}

type topicPartitioner struct{ kgo.TopicPartitioner }

func (p topicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return r.Context == pinned || p.TopicPartitioner.RequiresConsistency(r)
}

func (p topicPartitioner) Partition(r *kgo.Record, n int) int {
	if r.Context == pinned {
		return int(r.Partition) % n
	}
	return p.TopicPartitioner.Partition(r, n)
}

// arena hands out memory for records that kgo holds until they are
// acknowledged. Its chunks are reused only after release, which the sink
// calls once a Flush has returned: kgo calls every record's promise before
// Flush sees the record done, and touches no record after its promise.
type arena struct {
	buf  []byte
	recs []kgo.Record
	hdrs []kgo.RecordHeader
	// Chunks filled since the last release, and chunks free for reuse.
	fullBufs, freeBufs [][]byte
	fullRecs, freeRecs [][]kgo.Record
	fullHdrs, freeHdrs [][]kgo.RecordHeader
}

const (
	arenaChunk = 1 << 20
	// arenaKeep bounds the free chunks of each kind kept for reuse (about
	// 16 MiB of values: a default-sized batch); the rest is left to the
	// garbage collector.
	arenaKeep = 16
)

// begin returns an empty slice to append one value to; end claims it.
func (a *arena) begin() []byte {
	if cap(a.buf)-len(a.buf) < 4096 {
		a.buf = nextChunk(&a.fullBufs, &a.freeBufs, a.buf, arenaChunk)
	}
	return a.buf[len(a.buf):len(a.buf)]
}

// nextChunk retires cur to full and returns a reused or new empty chunk.
func nextChunk[T any](full, free *[][]T, cur []T, size int) []T {
	if cap(cur) > 0 {
		*full = append(*full, cur)
	}
	if n := len(*free); n > 0 {
		c := (*free)[n-1]
		*free = (*free)[:n-1]
		return c[:0]
	}
	return make([]T, 0, size)
}

// end claims b, built by appending to begin's slice. If append had to move
// b, it is already its own allocation. A nil b stays nil.
func (a *arena) end(b []byte) []byte {
	if b == nil {
		return nil
	}
	free := a.buf[len(a.buf):cap(a.buf)]
	if len(b) <= len(free) && len(b) > 0 && &b[0] == &free[0] {
		a.buf = a.buf[:len(a.buf)+len(b)]
	}
	return b[:len(b):len(b)]
}

func (a *arena) copy(b []byte) []byte {
	return a.end(append(a.begin(), b...))
}

func (a *arena) record() *kgo.Record {
	if len(a.recs) == cap(a.recs) {
		a.recs = nextChunk(&a.fullRecs, &a.freeRecs, a.recs, 1024)
	}
	a.recs = a.recs[:len(a.recs)+1]
	r := &a.recs[len(a.recs)-1]
	*r = kgo.Record{} // a reused one holds kgo's fields of its last use
	return r
}

func (a *arena) headers(n int) []kgo.RecordHeader {
	if cap(a.hdrs)-len(a.hdrs) < n {
		if n > 4096 {
			return make([]kgo.RecordHeader, n)
		}
		a.hdrs = nextChunk(&a.fullHdrs, &a.freeHdrs, a.hdrs, 4096)
	}
	h := a.hdrs[len(a.hdrs) : len(a.hdrs)+n : len(a.hdrs)+n]
	a.hdrs = a.hdrs[:len(a.hdrs)+n]
	return h
}

// release makes every chunk reusable. Call it only when kgo holds no record
// from the arena: after a successful Flush, before producing anything else.
func (a *arena) release() {
	a.buf, a.recs, a.hdrs = a.buf[:0], a.recs[:0], a.hdrs[:0]
	a.freeBufs = keep(a.freeBufs, a.fullBufs)
	a.freeRecs = keep(a.freeRecs, a.fullRecs)
	a.freeHdrs = keep(a.freeHdrs, a.fullHdrs)
	a.fullBufs, a.fullRecs, a.fullHdrs = a.fullBufs[:0], a.fullRecs[:0], a.fullHdrs[:0]
}

func keep[T any](free, full [][]T) [][]T {
	for _, c := range full {
		if len(free) >= arenaKeep {
			break
		}
		free = append(free, c)
	}
	clear(full) // the dropped ones go to the garbage collector
	return free
}

// kgoLogger sends franz-go's logs to slog: warnings and errors always,
// its info and debug logs only when slog's debug level is on.
type kgoLogger struct{ log *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelInfo
	}
	return kgo.LogLevelWarn
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lv = slog.LevelError
	case kgo.LogLevelWarn:
		lv = slog.LevelWarn
	}
	l.log.Log(context.Background(), lv, "kafka client: "+msg, keyvals...)
}

// topic ensures a topic exists (creating it unless configured not to) and
// returns its partition count, cached for the session.
func (s *Sink) topic(ctx context.Context, name string) (int32, error) {
	if n, ok := s.topics[name]; ok {
		return n, nil
	}
	n, err := s.ensureTopic(ctx, name, s.cfg.TopicPartitions, nil)
	if err != nil {
		return 0, err
	}
	s.topics[name] = n
	return n, nil
}

// ensureTopic creates the topic if missing and returns its partition count.
func (s *Sink) ensureTopic(ctx context.Context, name string, partitions int32, configs map[string]*string) (int32, error) {
	if !s.cfg.SkipCreateTopics {
		resp, err := s.adm.CreateTopic(ctx, partitions, s.cfg.ReplicationFactor, configs, name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return 0, fmt.Errorf("create topic %s: %w", name, err)
		}
		if err == nil {
			s.log.Info("kafka topic created", "topic", name, "partitions", resp.NumPartitions)
		}
	}
	td, err := s.adm.ListTopics(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("describe topic %s: %w", name, err)
	}
	t, ok := td[name]
	if !ok || t.Err != nil {
		return 0, fmt.Errorf("describe topic %s: %w", name, errors.Join(kerr.UnknownTopicOrPartition, t.Err))
	}
	return int32(len(t.Partitions)), nil
}
