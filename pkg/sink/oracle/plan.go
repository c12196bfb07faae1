package oracle

import (
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/sink/internal/collapse"
)

// A plan turns the changes of one Apply call into steps, so that each key of
// a table appears once per statement and each statement is one array
// execution. The collapse rules are the PostgreSQL sink's (package
// collapse): per key, the final action is a DELETE, a full row, or an
// UPDATE of the columns that were sent (unchanged TOASTed columns are left
// out). A segment ends at a barrier: a TRUNCATE, a new schema version of a
// table already in it, or a key change whose new row lacks an unchanged
// TOASTed value only the target holds (a move, run as a single-row UPDATE
// of the key).
//
// What Oracle adds: a full row becomes a plain INSERT unless the key's first
// change in the segment was an UPDATE or DELETE of it (then the row is there
// and it becomes a plain UPDATE of every non-key column). MERGE is used only
// where the row may already exist: the rows of a snapshot batch, and the
// fallback when an INSERT meets ORA-00001 or an UPDATE finds fewer rows than
// it was given (a replay over rows that are already there). MERGE is
// idempotent, so it is right either way.
type (
	step     = collapse.Step
	tableOps = collapse.Table
	move     = collapse.Move
)

// buildPlan collapses the changes of txs into steps.
func buildPlan(txs []sink.Tx) ([]step, error) { return collapse.Build("oracle", txs) }

// work is one table's statements in a segment, in execution order:
// deletes, inserts (rows not on the target), full-row updates (rows on the
// target), then partial updates grouped by the columns they set.
type work struct {
	deletes, inserts, updates []change.Row
	partial                   []*collapse.UpdateGroup
}

func split(t *tableOps) work {
	if len(t.Keys) == 0 {
		return work{inserts: t.Inserts}
	}
	deletes, full, partial := t.Split()
	w := work{deletes: deletes, partial: partial}
	nonKey := len(t.Rel.Columns) - len(t.Keys)
	for _, a := range full {
		if a.First == collapse.Existing && nonKey > 0 {
			w.updates = append(w.updates, a.Row)
		} else {
			w.inserts = append(w.inserts, a.Row)
		}
	}
	return w
}
