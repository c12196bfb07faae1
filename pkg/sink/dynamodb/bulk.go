package dynamodb

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/copytext"
	"github.com/cdcd-io/cdcd/pkg/schema"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

var _ sink.BulkLoader = (*Sink)(nil)

// Load writes one snapshot chunk, COPY text from the source, as puts in
// parallel BatchWriteItem calls (snapshot rows are version 0), then records
// the chunk as loaded in the checkpoint table. A crash before the record
// loads the chunk again, which writes the same items. With c.Truncate it
// first deletes the table's items.
func (s *Sink) Load(ctx context.Context, c *sink.BulkChunk, data io.Reader) (int64, error) {
	if c.Def == nil {
		return 0, fmt.Errorf("dynamodb sink %s: chunk %s carries no table definition", s.cfg.Name, c.ID)
	}
	if c.Binary {
		return 0, fmt.Errorf("dynamodb sink %s: chunk %s: binary COPY is not supported", s.cfg.Name, c.ID)
	}
	rel := relationOf(c.Def)
	if c.Truncate {
		if err := s.truncate(ctx, &change.Truncate{Relations: []*change.Relation{rel}}, 0, 0); err != nil {
			return 0, err
		}
	}
	var n int64
	if data != nil {
		// Snapshot rows have unique keys: they stream into the writer
		// without collapsing, calls in flight all along.
		col := collapser{s: s}
		p, err := s.plan(ctx, rel)
		if err != nil {
			return 0, err
		}
		w := s.newWriter(ctx)
		r := bufio.NewReaderSize(data, 256<<10)
		for {
			line, err := r.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				// A long row: gather it whole.
				buf := append([]byte(nil), line...)
				for errors.Is(err, bufio.ErrBufferFull) {
					line, err = r.ReadSlice('\n')
					buf = append(buf, line...)
				}
				line = buf
			}
			if len(line) > 0 {
				if line[len(line)-1] != '\n' {
					return n, w.abort(fmt.Errorf("dynamodb sink %s: chunk %s: COPY output ends inside a row", s.cfg.Name, c.ID))
				}
				row, perr := copytext.ParseLine(line[:len(line)-1], len(rel.Columns))
				if perr != nil {
					return n, w.abort(fmt.Errorf("dynamodb sink %s: chunk %s of %s: %w", s.cfg.Name, c.ID, rel.QualifiedName(), perr))
				}
				o, oerr := col.row(p, row, 0, 0)
				if oerr == nil {
					oerr = w.add(o)
				}
				if oerr != nil {
					return n, w.abort(oerr)
				}
				n++
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return n, w.abort(fmt.Errorf("dynamodb sink %s: read chunk %s: %w", s.cfg.Name, c.ID, err))
			}
		}
		if err := w.wait(); err != nil {
			return n, err
		}
	}
	item := map[string]types.AttributeValue{
		checkpointKey: &types.AttributeValueMemberS{Value: s.chunkKey(c.SnapshotID, c.ID)},
		"rows":        &types.AttributeValueMemberN{Value: fmt.Sprint(n)},
	}
	err := s.call(ctx, "PutItem", func() error {
		_, err := s.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.cfg.CheckpointTable), Item: item})
		return err
	})
	if err != nil {
		return n, classify(fmt.Errorf("dynamodb sink %s: record chunk %s as loaded: %w", s.cfg.Name, c.ID, err))
	}
	return n, nil
}

// chunkKey is the checkpoint table key of a loaded snapshot chunk.
func (s *Sink) chunkKey(snapshotID, chunkID string) string {
	return s.chunkPrefix(snapshotID) + chunkID
}

func (s *Sink) chunkPrefix(snapshotID string) string {
	return s.cfg.Name + "#snapshot#" + snapshotID + "#"
}

// Loaded returns the chunks of a snapshot recorded as loaded: a scan of the
// checkpoint table (a few items per snapshot chunk, none otherwise).
func (s *Sink) Loaded(ctx context.Context, snapshotID string) (map[string]bool, error) {
	prefix := s.chunkPrefix(snapshotID)
	out := map[string]bool{}
	p := dynamodb.NewScanPaginator(s.client, &dynamodb.ScanInput{
		TableName: aws.String(s.cfg.CheckpointTable), ConsistentRead: aws.Bool(true),
		FilterExpression:          aws.String("begins_with(#k, :p)"),
		ExpressionAttributeNames:  map[string]string{"#k": checkpointKey},
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": &types.AttributeValueMemberS{Value: prefix}},
	})
	for p.HasMorePages() {
		var page *dynamodb.ScanOutput
		err := s.call(ctx, "Scan", func() error {
			var err error
			page, err = p.NextPage(ctx)
			return err
		})
		if err != nil {
			return nil, classify(fmt.Errorf("dynamodb sink %s: read loaded snapshot chunks: %w", s.cfg.Name, err))
		}
		for _, it := range page.Items {
			if k, ok := it[checkpointKey].(*types.AttributeValueMemberS); ok {
				out[strings.TrimPrefix(k.Value, prefix)] = true
			}
		}
	}
	return out, nil
}

// relationOf is the relation of a snapshot table's rows (target names,
// source types, primary key).
func relationOf(t *schema.Table) *change.Relation {
	rel := &change.Relation{OID: t.OID, Schema: t.Target.Schema, Name: t.Target.Name, ReplicaIdentity: 'd'}
	for _, c := range t.Columns {
		rel.Columns = append(rel.Columns, change.Column{Name: c.Name, TypeOID: c.TypeOID, TypeName: c.Type, TypeMod: -1})
	}
	for _, k := range t.PrimaryKey {
		i := t.Column(k)
		rel.PrimaryKey = append(rel.PrimaryKey, i)
		rel.Columns[i].Key = true
	}
	return rel
}
