package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// checkpointRecord is the value of a checkpoint record.
type checkpointRecord struct {
	Sink   string `json:"sink"`
	Seq    uint64 `json:"seq"`
	EndLSN string `json:"end_lsn"`
	TsMs   int64  `json:"ts_ms"`
}

// ensureCheckpointTopic creates the checkpoint topic, compacted with one
// partition, unless it exists.
func (s *Sink) ensureCheckpointTopic(ctx context.Context) error {
	compact := "compact"
	if _, err := s.ensureTopic(ctx, s.cfg.CheckpointTopic, 1, map[string]*string{"cleanup.policy": &compact}); err != nil {
		return classify(fmt.Errorf("kafka sink %s: checkpoint topic: %w", s.cfg.Name, err))
	}
	return nil
}

// idleRead is how long reading the checkpoint topic may go without a record
// before it gives up with ErrCheckpointStalled.
const idleRead = 5 * time.Second

// ErrCheckpointStalled is returned, marked retriable, by Position when the
// checkpoint topic yields no record for 5 seconds before its last stable
// offsets are reached. The position cannot be known then: resuming from the
// last checkpoint read so far would re-send (duplicate) every batch committed
// after it, so apply retries instead, re-reading from the start.
var ErrCheckpointStalled = errors.New("reading the checkpoint topic stalled before its last stable offset")

// readPosition reads the checkpoint topic with read_committed up to its last
// stable offsets and returns the last position recorded under the sink's
// name. Control records (transaction markers) are kept so that the read
// position visibly reaches the end offsets. Only a read that reached them
// yields a position: a stall is ErrCheckpointStalled, and every failure is
// classified by classify (retriable unless retrying cannot cure it).
func (s *Sink) readPosition(ctx context.Context) (sink.Position, error) {
	topic := s.cfg.CheckpointTopic
	ends, err := s.adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return sink.Position{}, classify(fmt.Errorf("kafka sink %s: list end offsets of %s: %w", s.cfg.Name, topic, err))
	}
	starts, err := s.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return sink.Position{}, classify(fmt.Errorf("kafka sink %s: list start offsets of %s: %w", s.cfg.Name, topic, err))
	}
	want := map[int32]int64{} // partition → end offset still to reach
	for p, o := range ends[topic] {
		if o.Err != nil {
			return sink.Position{}, classify(fmt.Errorf("kafka sink %s: end offset of %s[%d]: %w", s.cfg.Name, topic, p, o.Err))
		}
		start := int64(0)
		if so, ok := starts.Lookup(topic, p); ok {
			start = so.Offset
		}
		if o.Offset > start {
			want[p] = o.Offset
		}
	}
	var pos sink.Position
	if len(want) == 0 {
		s.log.Info("no checkpoint in kafka: starting from the beginning of the trail", "topic", topic)
		return pos, nil
	}
	opts, err := s.cfg.clientOpts(kgoLogger{s.log})
	if err != nil {
		return pos, err
	}
	offsets := map[int32]kgo.Offset{}
	for p := range want {
		offsets[p] = kgo.NewOffset().AtStart()
	}
	opts = append(opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	cons, err := kgo.NewClient(opts...)
	if err != nil {
		return pos, fmt.Errorf("kafka sink %s: checkpoint reader: %w", s.cfg.Name, err)
	}
	defer cons.Close()
	found := false
	for len(want) > 0 {
		pctx, cancel := context.WithTimeout(ctx, idleRead)
		fs := cons.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return pos, ctx.Err()
		}
		if pctx.Err() != nil && fs.NumRecords() == 0 {
			return sink.Position{}, classify(fmt.Errorf("kafka sink %s: read %s: no record for %s with offsets %v (partition: end offset) still to reach: %w",
				s.cfg.Name, topic, idleRead, want, ErrCheckpointStalled))
		}
		for _, fe := range fs.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
				continue
			}
			return sink.Position{}, classify(fmt.Errorf("kafka sink %s: read %s[%d]: %w", s.cfg.Name, fe.Topic, fe.Partition, fe.Err))
		}
		var perr error
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
			if r.Attrs.IsControl() || string(r.Key) != s.cfg.Name || r.Value == nil {
				return
			}
			var cr checkpointRecord
			if err := json.Unmarshal(r.Value, &cr); err != nil {
				perr = fmt.Errorf("kafka sink %s: checkpoint record at %s[%d]@%d: %w", s.cfg.Name, r.Topic, r.Partition, r.Offset, err)
				return
			}
			l, err := change.ParseLSN(cr.EndLSN)
			if err != nil {
				perr = fmt.Errorf("kafka sink %s: checkpoint record at %s[%d]@%d: %w", s.cfg.Name, r.Topic, r.Partition, r.Offset, err)
				return
			}
			pos, found = sink.Position{Seq: cr.Seq, EndLSN: l}, true
		})
		if perr != nil {
			return pos, perr
		}
	}
	if !found {
		s.log.Info("no checkpoint for this sink in kafka: starting from the beginning of the trail", "topic", topic)
	} else {
		s.log.Info("checkpoint read from kafka", "topic", topic, "seq", pos.Seq, "end_lsn", pos.EndLSN.String())
	}
	return pos, nil
}
