package dynamodb

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cdcd-io/cdcd/pkg/change"
)

type opKind uint8

const (
	opPut    opKind = iota + 1 // the whole row: PutItem / BatchWriteItem put
	opUpdate                   // some columns (unchanged TOAST left out): UpdateItem
	opDelete                   // DeleteItem / BatchWriteItem delete
)

// op is the last state of one item in a batch: every change to a key in a
// batch collapses into one op, so a key is in exactly one write call.
type op struct {
	kind opKind
	p    *relPlan
	id   string // table and key, the collapse map's key
	key  map[string]types.AttributeValue
	// cols are the column values to write: all of them for a put, the
	// changed ones for an update.
	cols map[string]types.AttributeValue
	// fetch, for a put whose key changed while some TOASTed columns did not,
	// is the old item to copy those columns from (before this batch writes).
	fetch *op
	// lsn and seq order the op's last change: the commit LSN of its
	// transaction and its position there. They make the version.
	lsn change.LSN
	seq int
}

// version is the op's version attribute value: the commit LSN's decimal
// digits followed by the change's position in its transaction as ten
// digits, so versions compare as numbers in source commit order. Snapshot
// rows are version 0.
func (o *op) version() string {
	if o.lsn == 0 {
		return "0"
	}
	return strconv.FormatUint(uint64(o.lsn), 10) + fmt.Sprintf("%010d", o.seq)
}

// describe names the op's table and key for errors.
func (o *op) describe() string {
	var b strings.Builder
	b.WriteString(o.p.t.name)
	b.WriteString(" key ")
	b.WriteString(o.p.t.pk)
	b.WriteByte('=')
	b.WriteString(attrText(o.key[o.p.t.pk]))
	if o.p.t.sk != "" {
		b.WriteString(", ")
		b.WriteString(o.p.t.sk)
		b.WriteByte('=')
		b.WriteString(attrText(o.key[o.p.t.sk]))
	}
	return b.String()
}

func attrText(v types.AttributeValue) string {
	switch x := v.(type) {
	case *types.AttributeValueMemberS:
		return strconv.Quote(x.Value)
	case *types.AttributeValueMemberN:
		return x.Value
	case *types.AttributeValueMemberB:
		return fmt.Sprintf("0x%x", x.Value)
	}
	return fmt.Sprint(v)
}

// collapser gathers a batch's changes into one op per item key, in first
// appearance order.
type collapser struct {
	s     *Sink
	ops   []*op
	byKey map[string]*op
}

func (c *collapser) reset() {
	c.ops = c.ops[:0]
	clear(c.byKey)
}

// set makes o the key's op.
func (c *collapser) set(o *op) {
	if prev, ok := c.byKey[o.id]; ok {
		*prev = *o
		return
	}
	c.byKey[o.id] = o
	c.ops = append(c.ops, o)
}

// add folds one insert, update or delete in.
func (c *collapser) add(ctx context.Context, ch *change.Change, lsn change.LSN, seq int) error {
	p, err := c.s.plan(ctx, ch.Relation)
	if err != nil {
		return err
	}
	switch ch.Op {
	case change.OpInsert:
		o, err := c.row(p, ch.New, lsn, seq)
		if err != nil {
			return err
		}
		c.set(o)
	case change.OpDelete:
		if ch.Old == nil {
			return fmt.Errorf("dynamodb sink %s: a delete on %s carries no old key (REPLICA IDENTITY NOTHING?)", c.s.cfg.Name, ch.Relation.QualifiedName())
		}
		o, err := c.keyOp(p, ch.Old, opDelete, lsn, seq)
		if err != nil {
			return err
		}
		c.set(o)
	case change.OpUpdate:
		o, err := c.row(p, ch.New, lsn, seq)
		if err != nil {
			return err
		}
		if ch.Old != nil {
			old, err := c.keyOp(p, ch.Old, opDelete, lsn, seq)
			if err != nil {
				return err
			}
			if old.id != o.id { // the key changed: delete the old item, put the new
				// set overwrites the old key's op in place: keep a copy.
				var prev *op
				if p := c.byKey[old.id]; p != nil {
					cp := *p
					prev = &cp
				}
				c.set(old)
				if o.kind == opUpdate {
					switch {
					case prev != nil && prev.kind == opPut:
						// prev may itself wait for its columns from an
						// older key's item: so does o.
						o.kind, o.cols, o.fetch = opPut, merged(prev.cols, o.cols), prev.fetch
					default:
						// The unchanged columns are in the old item (and in
						// prev's, for an update earlier in this batch).
						f := *old
						f.cols = nil
						if prev != nil && prev.kind == opUpdate {
							f.cols = prev.cols
						}
						o.kind, o.fetch = opPut, &f
					}
				}
				c.set(o)
				return nil
			}
		}
		if prev, ok := c.byKey[o.id]; ok && o.kind == opUpdate {
			switch prev.kind {
			case opPut:
				o.kind, o.cols = opPut, merged(prev.cols, o.cols)
				o.fetch = prev.fetch
			case opUpdate:
				o.cols = merged(prev.cols, o.cols)
			}
		}
		c.set(o)
	}
	return nil
}

func merged(base, over map[string]types.AttributeValue) map[string]types.AttributeValue {
	m := maps.Clone(base)
	if m == nil {
		m = make(map[string]types.AttributeValue, len(over))
	}
	maps.Copy(m, over)
	return m
}

// row is the put (or, with unchanged-TOAST columns, update) of a new row.
func (c *collapser) row(p *relPlan, r change.Row, lsn change.LSN, seq int) (*op, error) {
	o, err := c.keyOp(p, r, opPut, lsn, seq)
	if err != nil {
		return nil, err
	}
	o.cols = make(map[string]types.AttributeValue, len(r))
	for i, v := range r {
		if i >= len(p.rel.Columns) {
			break
		}
		col := &p.rel.Columns[i]
		switch v.Kind {
		case change.ValueUnchanged, change.ValueAbsent:
			o.kind = opUpdate
			continue
		}
		av, err := c.s.conv.value(col.TypeOID, v)
		if err != nil {
			return nil, fmt.Errorf("dynamodb sink %s: %s column %s: %w", c.s.cfg.Name, p.rel.QualifiedName(), col.Name, err)
		}
		o.cols[col.Name] = av
	}
	return o, nil
}

// keyOp is an op of kind k on the item keyed by r's key columns.
func (c *collapser) keyOp(p *relPlan, r change.Row, k opKind, lsn change.LSN, seq int) (*op, error) {
	o := &op{kind: k, p: p, lsn: lsn, seq: seq, key: make(map[string]types.AttributeValue, 2)}
	var id strings.Builder
	id.WriteString(p.t.name)
	add := func(attr string, col int, typ types.ScalarAttributeType) error {
		if col >= len(r) {
			return fmt.Errorf("dynamodb sink %s: %s row has no column %s", c.s.cfg.Name, p.rel.QualifiedName(), p.rel.Columns[col].Name)
		}
		v, err := c.s.conv.keyValue(p.rel.Columns[col].TypeOID, r[col], typ)
		if err != nil {
			return fmt.Errorf("dynamodb sink %s: %s key column %s: %w", c.s.cfg.Name, p.rel.QualifiedName(), p.rel.Columns[col].Name, err)
		}
		o.key[attr] = v
		id.WriteByte(0)
		id.WriteString(string(typ))
		id.WriteByte(':')
		switch x := v.(type) {
		case *types.AttributeValueMemberS:
			id.WriteString(x.Value)
		case *types.AttributeValueMemberN:
			id.WriteString(x.Value)
		case *types.AttributeValueMemberB:
			id.Write(x.Value)
		}
		return nil
	}
	if err := add(p.t.pk, p.pkCol, p.t.pkType); err != nil {
		return nil, err
	}
	if p.skCol >= 0 {
		if err := add(p.t.sk, p.skCol, p.t.skType); err != nil {
			return nil, err
		}
	}
	o.id = id.String()
	return o, nil
}
