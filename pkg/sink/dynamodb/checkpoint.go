package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// checkpoint is the sink's checkpoint item (doc.go, Checkpoint item).
type checkpoint struct {
	// pos is the position after the last fully acknowledged batch.
	pos sink.Position
	// hw (high water) is the largest commit LSN of any change the sink may
	// have sent: at least every change up to it may already be stored.
	hw change.LSN
}

// checkpointKey is the checkpoint table's partition key attribute.
const checkpointKey = "sink"

// ensureCheckpointTable creates the checkpoint table when it is missing
// (it is cdcd's own, so without CreateTables too) and checks its key.
func (s *Sink) ensureCheckpointTable(ctx context.Context) error {
	want := &table{name: s.cfg.CheckpointTable, pk: checkpointKey, pkType: types.ScalarAttributeTypeS}
	var t *table
	err := s.call(ctx, "DescribeTable", func() error {
		var err error
		t, err = describeTable(ctx, s.client, want.name)
		return err
	})
	var nf *types.ResourceNotFoundException
	switch {
	case errors.As(err, &nf):
		if err := s.call(ctx, "CreateTable", func() error { return createTable(ctx, s.client, want) }); err != nil {
			return classify(fmt.Errorf("dynamodb sink %s: checkpoint table: %w", s.cfg.Name, err))
		}
		s.log.Info("dynamodb checkpoint table created", "table", want.name)
		return nil
	case err != nil:
		return classify(fmt.Errorf("dynamodb sink %s: checkpoint table: %w", s.cfg.Name, err))
	case !t.active:
		if err := s.call(ctx, "DescribeTable", func() error { return waitActive(ctx, s.client, want.name) }); err != nil {
			return classify(fmt.Errorf("dynamodb sink %s: checkpoint table: %w", s.cfg.Name, err))
		}
	}
	switch {
	case t.pk != checkpointKey || t.sk != "":
		return fmt.Errorf("dynamodb sink %s: checkpoint table %s is keyed by %s, want partition %s (S) only: choose another checkpoint_table",
			s.cfg.Name, t.name, keyDesc(t), checkpointKey)
	}
	return nil
}

// readCheckpoint reads the checkpoint item with a strongly consistent read;
// a missing item is the zero checkpoint.
func (s *Sink) readCheckpoint(ctx context.Context) (checkpoint, error) {
	var out *dynamodb.GetItemOutput
	err := s.call(ctx, "GetItem", func() error {
		var err error
		out, err = s.client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName:      aws.String(s.cfg.CheckpointTable),
			Key:            map[string]types.AttributeValue{checkpointKey: &types.AttributeValueMemberS{Value: s.cfg.Name}},
			ConsistentRead: aws.Bool(true),
		})
		return err
	})
	if err != nil {
		return checkpoint{}, classify(fmt.Errorf("dynamodb sink %s: read checkpoint item from %s: %w", s.cfg.Name, s.cfg.CheckpointTable, err))
	}
	if out.Item == nil {
		return checkpoint{}, nil
	}
	var ck checkpoint
	num := func(attr string) (uint64, error) {
		n, ok := out.Item[attr].(*types.AttributeValueMemberN)
		if !ok {
			return 0, fmt.Errorf("dynamodb sink %s: checkpoint item in %s has no number %q", s.cfg.Name, s.cfg.CheckpointTable, attr)
		}
		return strconv.ParseUint(n.Value, 10, 64)
	}
	seq, err := num("seq")
	if err != nil {
		return ck, err
	}
	end, err := num("end_lsn")
	if err != nil {
		return ck, err
	}
	hw, err := num("high_water")
	if err != nil {
		return ck, err
	}
	ck.pos = sink.Position{Seq: seq, EndLSN: change.LSN(end)}
	ck.hw = change.LSN(hw)
	return ck, nil
}

// storeCheckpoint writes the checkpoint item (one PutItem: atomic).
func (s *Sink) storeCheckpoint(ctx context.Context, ck checkpoint) error {
	item := map[string]types.AttributeValue{
		checkpointKey:  &types.AttributeValueMemberS{Value: s.cfg.Name},
		"seq":          &types.AttributeValueMemberN{Value: strconv.FormatUint(ck.pos.Seq, 10)},
		"end_lsn":      &types.AttributeValueMemberN{Value: strconv.FormatUint(uint64(ck.pos.EndLSN), 10)},
		"end_lsn_text": &types.AttributeValueMemberS{Value: ck.pos.EndLSN.String()},
		"high_water":   &types.AttributeValueMemberN{Value: strconv.FormatUint(uint64(ck.hw), 10)},
		"updated_at":   &types.AttributeValueMemberS{Value: time.Now().UTC().Format(time.RFC3339Nano)},
	}
	err := s.call(ctx, "PutItem", func() error {
		_, err := s.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.cfg.CheckpointTable), Item: item})
		return err
	})
	if err != nil {
		return classify(fmt.Errorf("dynamodb sink %s: write checkpoint item to %s: %w", s.cfg.Name, s.cfg.CheckpointTable, err))
	}
	s.ck = ck
	return nil
}
