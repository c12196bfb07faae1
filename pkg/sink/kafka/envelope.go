package kafka

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// Version is written as source.version in Debezium envelopes.
var Version = "cdcd-dev"

// relInfo is what the encoder precomputes once per relation.
type relInfo struct {
	topic  string
	keys   []int
	names  [][]byte // `"col":` per column
	plain  []string // column names
	oids   []uint32
	kinds  []valueKind
	elems  []uint32
	source []byte // `"source":{…,"schema":…,"table":…` without txId, lsn, ts_ms
}

// encoder turns changes into record keys and values. Not safe for
// concurrent use.
type encoder struct {
	cfg  Config
	vals *values
	rels map[*change.Relation]*relInfo
	// unchanged collects the unchanged-TOAST column names of the last row
	// appended.
	unchanged []string
}

func newEncoder(cfg Config) *encoder {
	return &encoder{cfg: cfg, vals: newValues(), rels: map[*change.Relation]*relInfo{}}
}

func (e *encoder) topic(schema, table string) string {
	r := strings.NewReplacer("{schema}", schema, "{table}", table)
	return r.Replace(e.cfg.Topic)
}

func (e *encoder) rel(r *change.Relation) *relInfo {
	if ri, ok := e.rels[r]; ok {
		return ri
	}
	if len(e.rels) > 10000 { // relations are replaced on schema changes
		clear(e.rels)
	}
	ri := &relInfo{topic: e.topic(r.Schema, r.Name), keys: r.KeyColumns()}
	for _, c := range r.Columns {
		n := appendString(nil, []byte(c.Name))
		ri.names = append(ri.names, append(n, ':'))
		ri.plain = append(ri.plain, c.Name)
		k, el := kindOf(e.vals.types, c.TypeOID)
		ri.oids = append(ri.oids, c.TypeOID)
		ri.kinds = append(ri.kinds, k)
		ri.elems = append(ri.elems, el)
	}
	src := []byte(`"source":{"version":`)
	src = appendString(src, []byte(Version))
	src = append(src, `,"connector":"cdcd","name":`...)
	src = appendString(src, []byte(e.cfg.Name))
	src = append(src, `,"snapshot":"false","db":`...)
	src = appendString(src, []byte(e.cfg.Database))
	src = append(src, `,"schema":`...)
	src = appendString(src, []byte(r.Schema))
	src = append(src, `,"table":`...)
	src = appendString(src, []byte(r.Name))
	ri.source = src
	e.rels[r] = ri
	return ri
}

// appendRow appends a row as a JSON object; absent columns are left out,
// unchanged-TOAST columns are left out and recorded in e.unchanged. A nil
// row is null.
func (e *encoder) appendRow(dst []byte, ri *relInfo, row change.Row) ([]byte, error) {
	e.unchanged = e.unchanged[:0]
	if row == nil {
		return append(dst, "null"...), nil
	}
	if len(row) != len(ri.names) {
		return dst, fmt.Errorf("row has %d values, relation %d columns", len(row), len(ri.names))
	}
	dst = append(dst, '{')
	first := true
	for i, v := range row {
		switch v.Kind {
		case change.ValueAbsent:
			continue
		case change.ValueUnchanged:
			e.unchanged = append(e.unchanged, ri.plain[i])
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, ri.names[i]...)
		var err error
		dst, err = e.vals.appendValue(dst, ri.oids[i], ri.kinds[i], ri.elems[i], v)
		if err != nil {
			return dst, fmt.Errorf("column %s: %w", ri.plain[i], err)
		}
	}
	return append(dst, '}'), nil
}

// appendKey appends the key object of row, or returns nil when the table has
// no key.
func (e *encoder) appendKey(dst []byte, ri *relInfo, row change.Row) ([]byte, error) {
	if len(ri.keys) == 0 || row == nil {
		return nil, nil
	}
	dst = append(dst, '{')
	for j, i := range ri.keys {
		if j > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, ri.names[i]...)
		v := row[i]
		if !v.HasData() && v.Kind != change.ValueNull {
			return nil, fmt.Errorf("key column %s is %s", ri.plain[i], v.Kind)
		}
		var err error
		if dst, err = e.vals.appendValue(dst, ri.oids[i], ri.kinds[i], ri.elems[i], v); err != nil {
			return nil, fmt.Errorf("key column %s: %w", ri.plain[i], err)
		}
	}
	return append(dst, '}'), nil
}

// keyChanged reports whether an update moved the row to another key.
func keyChanged(ri *relInfo, c *change.Change) bool {
	if c.Old == nil || len(ri.keys) == 0 {
		return false
	}
	for _, i := range ri.keys {
		o, n := c.Old[i], c.New[i]
		if n.Kind == change.ValueUnchanged || o.Kind == change.ValueAbsent {
			continue
		}
		if o.Kind != n.Kind || !bytes.Equal(o.Data, n.Data) {
			return true
		}
	}
	return false
}

// event is one change event to encode.
type event struct {
	op            byte // c u d t
	before, after change.Row
	tx            *change.Tx
	lsn           change.LSN
	nowMs         int64
}

// appendDebezium appends the Debezium envelope of ev.
func (e *encoder) appendDebezium(dst []byte, ri *relInfo, ev *event) ([]byte, error) {
	var err error
	dst = append(dst, `{"before":`...)
	if dst, err = e.appendRow(dst, ri, ev.before); err != nil {
		return dst, err
	}
	dst = append(dst, `,"after":`...)
	if dst, err = e.appendRow(dst, ri, ev.after); err != nil {
		return dst, err
	}
	dst = append(dst, ',')
	dst = append(dst, ri.source...)
	dst = append(dst, `,"ts_ms":`...)
	var xid uint32
	if ev.tx != nil {
		xid = ev.tx.XID
		dst = strconv.AppendInt(dst, ev.tx.CommitTime.UnixMilli(), 10)
	} else {
		dst = strconv.AppendInt(dst, ev.nowMs, 10)
	}
	dst = append(dst, `,"txId":`...)
	dst = strconv.AppendUint(dst, uint64(xid), 10)
	dst = append(dst, `,"lsn":`...)
	dst = strconv.AppendUint(dst, uint64(ev.lsn), 10)
	dst = append(dst, `},"op":"`...)
	dst = append(dst, ev.op)
	dst = append(dst, `","ts_ms":`...)
	dst = strconv.AppendInt(dst, ev.nowMs, 10)
	if len(e.unchanged) > 0 {
		dst = append(dst, `,"unchanged":[`...)
		for i, n := range e.unchanged {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, []byte(n))
		}
		dst = append(dst, ']')
	}
	return append(dst, '}'), nil
}
