package postgres

import (
	"fmt"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// A plan turns the changes of one Apply call into steps. Most steps are
// segments: set-based work, where every key of a table has exactly one final
// action. A segment ends at a barrier, where the following work must see the
// segment's outcome on the target: a TRUNCATE, a new schema version of a table
// already in the segment, or a key change whose new row lacks an unchanged
// TOASTed value that only the target holds (a move).
//
// Collapse rules, per key, applying the next change c to the key's action a
// (none, DELETE, UPSERT full row, UPDATE of some columns):
//
//	insert                       → UPSERT c.New
//	update, full new row         → UPSERT c.New
//	update with unchanged cols:  none → UPDATE c.New's sent columns
//	                             UPSERT r → UPSERT c.New completed from r
//	                             UPDATE u → UPDATE u's columns overlaid with c.New's
//	                             DELETE → DELETE (an update of a deleted row is a no-op)
//	delete                       → DELETE
//	update old key k1 → new k2:  k1 gets DELETE, k2 gets UPSERT c.New (completed
//	                             from k1's UPSERT or a full old row when columns are
//	                             unchanged; if neither has them: a move barrier)
//
// With a full old row (REPLICA IDENTITY FULL) unchanged columns are completed
// from it first, so such updates are full rows.
//
// Why the per-table statement order DELETE, UPSERT, UPDATE is right for every
// sequence: after collapsing, a key appears in exactly one of the three
// statements, and statements on different keys commute, since rows of
// different keys are independent once foreign keys are not enforced
// (session_replication_role = replica) and the key is the only uniqueness the
// plan knows. So any order gives the same final state as applying the source
// changes one by one; DELETE first merely frees values of other unique
// constraints early. Source streams are assumed to respect the key's
// uniqueness at every change, as immediate constraints force them to; a swap
// a↔b done in one statement under a DEFERRABLE primary key breaks that
// assumption (the second change's old key names a row the first one moved)
// and is not supported.
type plan struct {
	steps []step
	cur   *segment
}

// step is one unit of execution, run in order.
type step struct {
	seg      *segment         // set-based work
	truncate *change.Truncate // a TRUNCATE
	move     *move            // a single-row key change
}

// segment holds the collapsed work of a run of changes without barriers.
type segment struct {
	tables []*tableOps // in order of first appearance
	byName map[target]*tableOps
}

// move is a key change that must run as a real UPDATE on the target, because
// the new row has unchanged TOASTed columns whose values only the target has.
type move struct {
	rel *change.Relation
	old change.Row // holds the old key
	new change.Row
}

// actionKind is the final action for one key.
type actionKind uint8

const (
	actDelete actionKind = iota + 1
	actUpsert
	actUpdate
)

// keyAction is the final action for one key of a table in a segment.
type keyAction struct {
	kind actionKind
	// row: for actDelete a row holding the key values at the key positions;
	// for actUpsert the full new row; for actUpdate the new row with
	// ValueUnchanged in the columns to leave untouched.
	row change.Row
	// fresh: the key's first change in the segment was an INSERT, so the
	// row is not expected on the target before the segment (a final
	// UPSERT may then be a plain INSERT; see Sink.insertFresh).
	fresh bool
}

// tableOps is the collapsed work for one table in one segment.
type tableOps struct {
	rel     *change.Relation
	keys    []int                 // rel.KeyColumns(); nil for a keyless table
	actions map[string]*keyAction // by encoded key
	order   []string              // keys in order of first appearance
	inserts []change.Row          // keyless tables: plain inserts in source order
}

// buildPlan collapses the changes of txs into steps. It is pure: it checks the
// changes against their relations but knows nothing of the target.
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

// barrier closes the current segment.
func (p *plan) barrier() {
	if p.cur != nil {
		p.steps = append(p.steps, step{seg: p.cur})
		p.cur = nil
	}
}

// table returns the work for rel's target in the current segment. A different
// relation (a new schema version) of a table already in the segment starts a
// new segment: rows of both versions cannot share statements.
func (p *plan) table(rel *change.Relation) *tableOps {
	t := targetFor(rel)
	if p.cur != nil {
		if ops := p.cur.byName[t]; ops != nil {
			if ops.rel == rel {
				return ops
			}
			p.barrier()
		}
	}
	if p.cur == nil {
		p.cur = &segment{byName: map[target]*tableOps{}}
	}
	ops := &tableOps{rel: rel, keys: rel.KeyColumns()}
	if len(ops.keys) > 0 {
		ops.actions = map[string]*keyAction{}
	}
	p.cur.tables = append(p.cur.tables, ops)
	p.cur.byName[t] = ops
	return ops
}

func (p *plan) add(c *change.Change) error {
	switch c.Op {
	case change.OpMessage:
		// Transactional messages, heartbeats (sink.HeartbeatPrefix) included,
		// carry nothing to write; their transaction still moves the position.
		return nil
	case change.OpTruncate:
		if c.Truncate == nil || len(c.Truncate.Relations) == 0 {
			return nil
		}
		p.barrier()
		p.steps = append(p.steps, step{truncate: c.Truncate})
		return nil
	case change.OpInsert, change.OpUpdate, change.OpDelete:
	default:
		return fmt.Errorf("unknown change operation %d", c.Op)
	}
	rel := c.Relation
	if rel == nil {
		return fmt.Errorf("%s change without a relation", c.Op)
	}
	if err := sink.CheckRow("postgres", rel, c); err != nil {
		return err
	}
	ops := p.table(rel)
	if len(ops.keys) == 0 {
		if c.Op != change.OpInsert {
			return fmt.Errorf("table %s has no primary key or replica identity: cdcd cannot apply updates/deletes to it; add a primary key",
				rel.QualifiedName())
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
		fresh := ops.actions[k] == nil
		ops.set(k, actUpsert, c.New)
		if fresh {
			ops.actions[k].fresh = true
		}
	case change.OpDelete:
		if c.Old == nil {
			return fmt.Errorf("delete on %s carries no old key (REPLICA IDENTITY NOTHING?)", rel.QualifiedName())
		}
		k, err := sink.KeyString(rel, ops.keys, c.Old, "old")
		if err != nil {
			return err
		}
		ops.set(k, actDelete, c.Old)
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
		row = sink.CompleteRow(row, c.Old) // a full old row has every value
	}
	prev := ops.actions[oldKey]
	if oldKey != newKey {
		if sink.HasUnchanged(row) {
			if prev == nil || prev.kind != actUpsert {
				// Only the target holds the unchanged values: move the row
				// there, after everything before it.
				p.barrier()
				p.steps = append(p.steps, step{move: &move{rel: rel, old: c.Old, new: row}})
				return nil
			}
			row = sink.CompleteRow(row, prev.row)
		}
		ops.set(oldKey, actDelete, c.Old)
		ops.set(newKey, actUpsert, row)
		return nil
	}
	switch {
	case !sink.HasUnchanged(row):
		ops.set(newKey, actUpsert, row)
	case prev == nil:
		ops.set(newKey, actUpdate, row)
	case prev.kind == actUpsert:
		ops.set(newKey, actUpsert, sink.CompleteRow(row, prev.row))
	case prev.kind == actUpdate:
		ops.set(newKey, actUpdate, sink.CompleteRow(row, prev.row))
	case prev.kind == actDelete:
		// The row is gone; updating it would change nothing.
	}
	return nil
}

// set records the final action for key k.
func (t *tableOps) set(k string, kind actionKind, row change.Row) {
	if a := t.actions[k]; a != nil {
		a.kind, a.row = kind, row
		return
	}
	t.actions[k] = &keyAction{kind: kind, row: row}
	t.order = append(t.order, k)
}

// updateGroup is the rows of one UPDATE statement: they set the same columns.
type updateGroup struct {
	cols []int // the non-key columns set
	rows []change.Row
}

// split returns the final actions by kind: the keys to delete (rows holding
// them), the full rows of fresh keys (first seen as an INSERT) and of other
// keys to upsert, and the partial updates grouped by the set of columns they
// set. Each key is in exactly one of them.
func (t *tableOps) split() (deletes, fresh, upserts []change.Row, updates []*updateGroup) {
	var groups map[string]*updateGroup
	for _, k := range t.order {
		a := t.actions[k]
		switch a.kind {
		case actDelete:
			deletes = append(deletes, a.row)
		case actUpsert:
			if a.fresh {
				fresh = append(fresh, a.row)
			} else {
				upserts = append(upserts, a.row)
			}
		case actUpdate:
			cols := t.setColumns(a.row)
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
				updates = append(updates, g)
			}
			g.rows = append(g.rows, a.row)
		}
	}
	return deletes, fresh, upserts, updates
}

// setColumns returns the non-key columns of row that carry a value.
func (t *tableOps) setColumns(row change.Row) []int {
	var cols []int
	for i, v := range row {
		if v.Kind != change.ValueUnchanged && !sink.IsKey(t.keys, i) {
			cols = append(cols, i)
		}
	}
	return cols
}
