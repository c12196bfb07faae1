// Package stdout is the sink used when none is configured: it prints one
// JSON object per change, for trying cdcd out and for piping into tools.
//
// Values are printed as the strings PostgreSQL's text format gives, so
// nothing is rounded (numeric, int8, timestamps stay exact); NULL is null;
// unchanged TOASTed columns are left out of "new" and listed in "unchanged".
// Delivery is at-least-once: the apply worker keeps the position in a
// checkpoint file after each batch is written and flushed.
package stdout

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// Sink writes JSON lines to an io.Writer.
type Sink struct {
	w   *bufio.Writer
	enc *json.Encoder
}

var _ sink.Sink = (*Sink)(nil)

// New returns a sink writing to w.
func New(w io.Writer) *Sink {
	bw := bufio.NewWriterSize(w, 64<<10)
	return &Sink{w: bw, enc: json.NewEncoder(bw)}
}

// event is one printed line.
type event struct {
	Op         string             `json:"op"`
	Schema     string             `json:"schema,omitempty"`
	Table      string             `json:"table,omitempty"`
	Tables     []string           `json:"tables,omitempty"`
	XID        uint32             `json:"xid,omitempty"`
	LSN        string             `json:"lsn"`
	EndLSN     string             `json:"end_lsn,omitempty"`
	CommitTime string             `json:"commit_time,omitempty"`
	Key        []string           `json:"key,omitempty"`
	Old        map[string]*string `json:"old,omitempty"`
	New        map[string]*string `json:"new,omitempty"`
	Unchanged  []string           `json:"unchanged,omitempty"`
	Prefix     string             `json:"prefix,omitempty"`
	Content    string             `json:"content,omitempty"`
}

// Apply prints the batch's changes and flushes.
func (s *Sink) Apply(_ context.Context, b *sink.Batch) error {
	for _, tx := range b.Txs {
		for _, c := range tx.Changes {
			e := event{Op: c.Op.String(), LSN: c.LSN.String()}
			if tx.Tx != nil {
				e.XID = tx.Tx.XID
				if tx.Tx.EndLSN != 0 {
					e.EndLSN = tx.Tx.EndLSN.String()
					e.CommitTime = tx.Tx.CommitTime.UTC().Format(time.RFC3339Nano)
				}
			}
			switch c.Op {
			case change.OpInsert, change.OpUpdate, change.OpDelete:
				e.Schema, e.Table = c.Relation.Schema, c.Relation.Name
				for _, k := range c.Relation.KeyColumns() {
					e.Key = append(e.Key, c.Relation.Columns[k].Name)
				}
				e.Old, _ = row(c.Relation, c.Old)
				e.New, e.Unchanged = row(c.Relation, c.New)
			case change.OpTruncate:
				for _, r := range c.Truncate.Relations {
					e.Tables = append(e.Tables, r.QualifiedName())
				}
			case change.OpMessage:
				e.Prefix, e.Content = c.Message.Prefix, string(c.Message.Content)
			}
			if err := s.enc.Encode(&e); err != nil {
				return err
			}
		}
	}
	return s.w.Flush()
}

func row(rel *change.Relation, r change.Row) (map[string]*string, []string) {
	if r == nil {
		return nil, nil
	}
	m := make(map[string]*string, len(r))
	var unchanged []string
	for i, v := range r {
		name := rel.Columns[i].Name
		switch v.Kind {
		case change.ValueNull:
			m[name] = nil
		case change.ValueText, change.ValueBinary:
			s := v.String()
			m[name] = &s
		case change.ValueUnchanged:
			unchanged = append(unchanged, name)
		}
	}
	return m, unchanged
}

// Close flushes.
func (s *Sink) Close(context.Context) error { return s.w.Flush() }
