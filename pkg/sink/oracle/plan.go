package oracle

import (
	"fmt"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// A plan turns the changes of one Apply call into steps, so that each key of
// a table appears once per statement and each statement is one array
// execution. It follows the PostgreSQL sink's collapse rules (see
// pkg/sink/postgres/plan.go): per key, the final action is a DELETE, a full
// row, or an UPDATE of the columns that were sent (unchanged TOASTed
// columns are left out). A segment ends at a barrier: a TRUNCATE, a new
// schema version of a table already in it, or a key change whose new row
// lacks an unchanged TOASTed value only the target holds (a move, run as a
// single-row UPDATE of the key).
//
// What Oracle adds: a full row becomes a plain INSERT when the key's first
// change in the segment was an INSERT (the row is not on the target), and a
// plain UPDATE of every non-key column when it was an UPDATE or DELETE (the
// row is there). MERGE is used only where the row may already exist: the
// rows of a snapshot batch, and the fallback when an INSERT meets ORA-00001
// or an UPDATE finds fewer rows than it was given (a replay over rows that
// are already there). MERGE is idempotent, so it is right either way.
type plan struct {
	steps []step
	cur   *segment
}

// step is one unit of execution, run in order.
type step struct {
	seg      *segment
	truncate []*change.Relation
	move     *move
}

type segment struct {
	tables []*tableOps
	byName map[string]*tableOps
}

// move is a key change that must run as an UPDATE on the target, because
// the new row has unchanged TOASTed columns whose values only the target has.
type move struct {
	rel      *change.Relation
	old, new change.Row
}

type actionKind uint8

const (
	actDelete actionKind = iota + 1
	actRow               // a full row
	actUpdate            // the columns that were sent
)

type keyAction struct {
	kind actionKind
	row  change.Row
	// existed: the key's first change in the segment was an UPDATE or a
	// DELETE, so the row is on the target before the segment.
	existed bool
}

// tableOps is the collapsed work for one table in one segment.
type tableOps struct {
	rel     *change.Relation
	keys    []int
	actions map[string]*keyAction
	order   []string
	inserts []change.Row // keyless tables: plain inserts in source order
}

// buildPlan collapses the changes of txs into steps. It is pure.
func buildPlan(txs []sink.Tx) ([]step, error) {
	var p plan
	for _, tx := range txs {
		for _, c := range tx.Changes {
			if err := p.add(c); err != nil {
				return nil, err
			}
		}
	}
	p.barrier()
	return p.steps, nil
}

func (p *plan) barrier() {
	if p.cur != nil {
		p.steps = append(p.steps, step{seg: p.cur})
		p.cur = nil
	}
}

func (p *plan) table(rel *change.Relation) *tableOps {
	name := rel.QualifiedName()
	if p.cur != nil {
		if ops := p.cur.byName[name]; ops != nil {
			if ops.rel == rel {
				return ops
			}
			p.barrier()
		}
	}
	if p.cur == nil {
		p.cur = &segment{byName: map[string]*tableOps{}}
	}
	ops := &tableOps{rel: rel, keys: rel.KeyColumns()}
	if len(ops.keys) > 0 {
		ops.actions = map[string]*keyAction{}
	}
	p.cur.tables = append(p.cur.tables, ops)
	p.cur.byName[name] = ops
	return ops
}

func (p *plan) add(c *change.Change) error {
	switch c.Op {
	case change.OpMessage:
		return nil // heartbeats and messages write nothing; the position still moves
	case change.OpTruncate:
		if c.Truncate == nil || len(c.Truncate.Relations) == 0 {
			return nil
		}
		p.barrier()
		p.steps = append(p.steps, step{truncate: c.Truncate.Relations})
		return nil
	case change.OpInsert, change.OpUpdate, change.OpDelete:
	default:
		return fmt.Errorf("unknown change operation %d", c.Op)
	}
	rel := c.Relation
	if rel == nil {
		return fmt.Errorf("%s change without a relation", c.Op)
	}
	if err := sink.CheckRow("oracle", rel, c); err != nil {
		return err
	}
	ops := p.table(rel)
	if len(ops.keys) == 0 {
		if c.Op != change.OpInsert {
			return fmt.Errorf("table %s has no primary key or replica identity: cdcd cannot apply updates/deletes to it; add a primary key", rel.QualifiedName())
		}
		ops.inserts = append(ops.inserts, c.New)
		return nil
	}
	switch c.Op {
	case change.OpInsert:
		k, err := sink.KeyString(rel, ops.keys, c.New, "new")
		if err != nil {
			return err
		}
		ops.set(k, actRow, c.New, false)
	case change.OpDelete:
		if c.Old == nil {
			return fmt.Errorf("delete on %s carries no old key (REPLICA IDENTITY NOTHING?)", rel.QualifiedName())
		}
		k, err := sink.KeyString(rel, ops.keys, c.Old, "old")
		if err != nil {
			return err
		}
		ops.set(k, actDelete, c.Old, true)
	case change.OpUpdate:
		return p.update(ops, c)
	}
	return nil
}

func (p *plan) update(ops *tableOps, c *change.Change) error {
	rel := c.Relation
	newKey, err := sink.KeyString(rel, ops.keys, c.New, "new")
	if err != nil {
		return err
	}
	oldKey := newKey
	if c.Old != nil {
		if oldKey, err = sink.KeyString(rel, ops.keys, c.Old, "old"); err != nil {
			return err
		}
	}
	row := c.New
	if sink.HasUnchanged(row) && c.Old != nil && !c.OldKeyOnly {
		row = sink.CompleteRow(row, c.Old)
	}
	prev := ops.actions[oldKey]
	if oldKey != newKey {
		if sink.HasUnchanged(row) {
			if prev == nil || prev.kind != actRow {
				p.barrier()
				p.steps = append(p.steps, step{move: &move{rel: rel, old: c.Old, new: row}})
				return nil
			}
			row = sink.CompleteRow(row, prev.row)
		}
		ops.set(oldKey, actDelete, c.Old, true)
		// The new key is not on the target (keys are unique at every
		// change), unless an earlier change in the segment deleted it.
		ops.set(newKey, actRow, row, false)
		return nil
	}
	switch {
	case !sink.HasUnchanged(row):
		ops.set(newKey, actRow, row, true)
	case prev == nil:
		ops.set(newKey, actUpdate, row, true)
	case prev.kind == actRow:
		ops.set(newKey, actRow, sink.CompleteRow(row, prev.row), true)
	case prev.kind == actUpdate:
		ops.set(newKey, actUpdate, sink.CompleteRow(row, prev.row), true)
	case prev.kind == actDelete:
		// The row is gone; updating it changes nothing.
	}
	return nil
}

// set records the final action for key k; existed counts only for the
// key's first change in the segment.
func (t *tableOps) set(k string, kind actionKind, row change.Row, existed bool) {
	if a := t.actions[k]; a != nil {
		a.kind, a.row = kind, row
		return
	}
	t.actions[k] = &keyAction{kind: kind, row: row, existed: existed}
	t.order = append(t.order, k)
}

// updateGroup is the rows of one UPDATE statement: they set the same columns.
type updateGroup struct {
	cols []int
	rows []change.Row
}

// work is one table's statements in a segment, in execution order:
// deletes, inserts (rows not on the target), full-row updates (rows on the
// target), then partial updates grouped by the columns they set.
type work struct {
	deletes, inserts, updates []change.Row
	partial                   []*updateGroup
}

func (t *tableOps) split() work {
	var w work
	if len(t.keys) == 0 {
		w.inserts = t.inserts
		return w
	}
	var groups map[string]*updateGroup
	nonKey := len(t.rel.Columns) - len(t.keys)
	for _, k := range t.order {
		a := t.actions[k]
		switch a.kind {
		case actDelete:
			w.deletes = append(w.deletes, a.row)
		case actRow:
			if a.existed && nonKey > 0 {
				w.updates = append(w.updates, a.row)
			} else {
				w.inserts = append(w.inserts, a.row)
			}
		case actUpdate:
			cols := setColumns(t.keys, a.row)
			if len(cols) == 0 {
				continue // only unchanged values: nothing to write
			}
			sig := sink.ColumnSignature(cols)
			g := groups[sig]
			if g == nil {
				if groups == nil {
					groups = map[string]*updateGroup{}
				}
				g = &updateGroup{cols: cols}
				groups[sig] = g
				w.partial = append(w.partial, g)
			}
			g.rows = append(g.rows, a.row)
		}
	}
	return w
}

// setColumns returns the non-key columns of row that carry a value.
func setColumns(keys []int, row change.Row) []int {
	var cols []int
	for i, v := range row {
		if v.Kind != change.ValueUnchanged && !sink.IsKey(keys, i) {
			cols = append(cols, i)
		}
	}
	return cols
}
