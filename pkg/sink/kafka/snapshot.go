package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// snapshotRow produces a snapshot row (an insert of a Batch.Snapshot) as a
// Debezium read event, op "r".
func (s *Sink) snapshotRow(ctx context.Context, c *change.Change, tx *change.Tx, hdr []kgo.RecordHeader, seq int, now int64) error {
	return s.row(ctx, 'r', c.Relation, nil, c.New, c.New, tx, hdr, seq, c.LSN, now)
}
