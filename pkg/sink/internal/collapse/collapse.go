// Package collapse turns the changes of one Apply call into set-based steps
// for the SQL sinks (PostgreSQL, Oracle): each key of a table gets one final
// action per segment, so each statement touches a key at most once and can
// run as one array or COPY operation. Its rules are tested through both
// sinks' plan tests (pkg/sink/postgres/plan_test.go, which shows every rule,
// and pkg/sink/oracle/plan_test.go).
//
// Build turns the changes of one Apply call into steps. Most steps are
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
package collapse

import (
	"fmt"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// Step is one unit of execution, run in order: exactly one field is set.
type Step struct {
	Segment  *Segment         // set-based work
	Truncate *change.Truncate // a TRUNCATE
	Move     *Move            // a single-row key change
}

// Segment holds the collapsed work of a run of changes without barriers.
type Segment struct {
	Tables []*Table // in order of first appearance
	byName map[tableName]*Table
}

type tableName struct{ schema, name string }

// Move is a key change that must run as a real UPDATE on the target, because
// the new row has unchanged TOASTed columns whose values only the target has.
type Move struct {
	Rel *change.Relation
	Old change.Row // holds the old key
	New change.Row
}

// Kind is the final action for one key.
type Kind uint8

const (
	// Delete: Row holds the key values at the key positions.
	Delete Kind = iota + 1
	// Full: Row is the full new row (upserted, inserted or updated).
	Full
	// Partial: Row is the new row with ValueUnchanged in the columns to
	// leave untouched (an UPDATE of the columns that were sent).
	Partial
)

// Seen is how a key first appeared in its segment: what the target is
// expected to hold for it before the segment.
type Seen uint8

const (
	// Inserted: first seen as an INSERT, so the row is not expected on the
	// target (a final full row may be a plain INSERT).
	Inserted Seen = iota + 1
	// MovedIn: first seen as the new key of a key change. Not expected on
	// the target either (keys are unique at every change), though a sink
	// may upsert it to be safe.
	MovedIn
	// Existing: first seen in an UPDATE or DELETE of the key itself, so the
	// row is on the target before the segment.
	Existing
)

// Action is the final action for one key of a table in a segment.
type Action struct {
	Kind  Kind
	Row   change.Row
	First Seen
}

// Table is the collapsed work for one table in one segment.
type Table struct {
	Rel     *change.Relation
	Keys    []int              // Rel.KeyColumns(); nil for a keyless table
	Actions map[string]*Action // by encoded key
	Order   []string           // keys in order of first appearance
	Inserts []change.Row       // keyless tables: plain inserts in source order
}

type plan struct {
	sink  string // for errors: "postgres", "oracle"
	steps []Step
	cur   *Segment
}

// Build collapses the changes of txs into steps. It is pure: it checks the
// changes against their relations (errors name the sink kind sinkKind) but
// knows nothing of the target.
func Build(sinkKind string, txs []sink.Tx) ([]Step, error) {
	p := plan{sink: sinkKind}
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
		p.steps = append(p.steps, Step{Segment: p.cur})
		p.cur = nil
	}
}

// table returns the work for rel's table in the current segment. A different
// relation (a new schema version) of a table already in the segment starts a
// new segment: rows of both versions cannot share statements.
func (p *plan) table(rel *change.Relation) *Table {
	name := tableName{rel.Schema, rel.Name}
	if p.cur != nil {
		if t := p.cur.byName[name]; t != nil {
			if t.Rel == rel {
				return t
			}
			p.barrier()
		}
	}
	if p.cur == nil {
		p.cur = &Segment{byName: map[tableName]*Table{}}
	}
	t := &Table{Rel: rel, Keys: rel.KeyColumns()}
	if len(t.Keys) > 0 {
		t.Actions = map[string]*Action{}
	}
	p.cur.Tables = append(p.cur.Tables, t)
	p.cur.byName[name] = t
	return t
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
		p.steps = append(p.steps, Step{Truncate: c.Truncate})
		return nil
	case change.OpInsert, change.OpUpdate, change.OpDelete:
	default:
		return fmt.Errorf("unknown change operation %d", c.Op)
	}
	rel := c.Relation
	if rel == nil {
		return fmt.Errorf("%s change without a relation", c.Op)
	}
	if err := sink.CheckRow(p.sink, rel, c); err != nil {
		return err
	}
	t := p.table(rel)
	if len(t.Keys) == 0 {
		if c.Op != change.OpInsert {
			return fmt.Errorf("table %s has no primary key or replica identity: cdcd cannot apply updates/deletes to it; add a primary key",
				rel.QualifiedName())
		}
		t.Inserts = append(t.Inserts, c.New)
		return nil
	}
	switch c.Op {
	case change.OpInsert:
		k, err := sink.KeyString(rel, t.Keys, c.New, "new")
		if err != nil {
			return err
		}
		t.set(k, Full, c.New, Inserted)
	case change.OpDelete:
		if c.Old == nil {
			return fmt.Errorf("delete on %s carries no old key (REPLICA IDENTITY NOTHING?)", rel.QualifiedName())
		}
		k, err := sink.KeyString(rel, t.Keys, c.Old, "old")
		if err != nil {
			return err
		}
		t.set(k, Delete, c.Old, Existing)
	case change.OpUpdate:
		return p.update(t, c)
	}
	return nil
}

func (p *plan) update(t *Table, c *change.Change) error {
	rel := c.Relation
	newKey, err := sink.KeyString(rel, t.Keys, c.New, "new")
	if err != nil {
		return err
	}
	oldKey := newKey
	if c.Old != nil {
		if oldKey, err = sink.KeyString(rel, t.Keys, c.Old, "old"); err != nil {
			return err
		}
	}
	row := c.New
	if sink.HasUnchanged(row) && c.Old != nil && !c.OldKeyOnly {
		row = sink.CompleteRow(row, c.Old) // a full old row has every value
	}
	prev := t.Actions[oldKey]
	if oldKey != newKey {
		if sink.HasUnchanged(row) {
			if prev == nil || prev.Kind != Full {
				// Only the target holds the unchanged values: move the row
				// there, after everything before it.
				p.barrier()
				p.steps = append(p.steps, Step{Move: &Move{Rel: rel, Old: c.Old, New: row}})
				return nil
			}
			row = sink.CompleteRow(row, prev.Row)
		}
		t.set(oldKey, Delete, c.Old, Existing)
		t.set(newKey, Full, row, MovedIn)
		return nil
	}
	switch {
	case !sink.HasUnchanged(row):
		t.set(newKey, Full, row, Existing)
	case prev == nil:
		t.set(newKey, Partial, row, Existing)
	case prev.Kind == Full:
		t.set(newKey, Full, sink.CompleteRow(row, prev.Row), Existing)
	case prev.Kind == Partial:
		t.set(newKey, Partial, sink.CompleteRow(row, prev.Row), Existing)
	case prev.Kind == Delete:
		// The row is gone; updating it would change nothing.
	}
	return nil
}

// set records the final action for key k; first counts only for the key's
// first change in the segment.
func (t *Table) set(k string, kind Kind, row change.Row, first Seen) {
	if a := t.Actions[k]; a != nil {
		a.Kind, a.Row = kind, row
		return
	}
	t.Actions[k] = &Action{Kind: kind, Row: row, First: first}
	t.Order = append(t.Order, k)
}

// UpdateGroup is the rows of one UPDATE statement: they set the same columns.
type UpdateGroup struct {
	Cols []int // the non-key columns set
	Rows []change.Row
}

// Split returns a keyed table's final actions by kind, in order of first
// appearance: the rows holding the keys to delete, the full-row actions
// (the sink decides by Action.First between insert, update and upsert), and
// the partial updates grouped by the set of columns they set. Each key is in
// exactly one of them; a partial update of only unchanged values in none.
func (t *Table) Split() (deletes []change.Row, full []*Action, partial []*UpdateGroup) {
	var groups map[string]*UpdateGroup
	for _, k := range t.Order {
		a := t.Actions[k]
		switch a.Kind {
		case Delete:
			deletes = append(deletes, a.Row)
		case Full:
			full = append(full, a)
		case Partial:
			cols := t.SetColumns(a.Row)
			if len(cols) == 0 {
				continue // only unchanged values: nothing to write
			}
			sig := sink.ColumnSignature(cols)
			g := groups[sig]
			if g == nil {
				if groups == nil {
					groups = map[string]*UpdateGroup{}
				}
				g = &UpdateGroup{Cols: cols}
				groups[sig] = g
				partial = append(partial, g)
			}
			g.Rows = append(g.Rows, a.Row)
		}
	}
	return deletes, full, partial
}

// SetColumns returns the non-key columns of row that carry a value.
func (t *Table) SetColumns(row change.Row) []int {
	var cols []int
	for i, v := range row {
		if v.Kind != change.ValueUnchanged && !sink.IsKey(t.Keys, i) {
			cols = append(cols, i)
		}
	}
	return cols
}
