package postgres

import (
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/sink/internal/collapse"
)

// A plan is the changes of one Apply call collapsed into steps: set-based
// segments (each key of a table with one final action), TRUNCATEs and key
// changes that must run as single-row UPDATEs. The rules, and why the
// per-table statement order DELETE, UPSERT, UPDATE is right, are in package
// collapse, shared with the Oracle sink.
type (
	step     = collapse.Step
	segment  = collapse.Segment
	tableOps = collapse.Table
	move     = collapse.Move
)

// buildPlan collapses the changes of txs into steps.
func buildPlan(txs []sink.Tx) ([]step, error) { return collapse.Build("postgres", txs) }

// split returns a keyed table's final actions by kind: the keys to delete
// (rows holding them), the full rows of fresh keys (first seen as an INSERT,
// so not expected on the target: see Sink.insertFresh) and of other keys to
// upsert, and the partial updates grouped by the set of columns they set.
// Each key is in exactly one of them.
func split(ops *tableOps) (deletes, fresh, upserts []change.Row, updates []*collapse.UpdateGroup) {
	deletes, full, updates := ops.Split()
	for _, a := range full {
		if a.First == collapse.Inserted {
			fresh = append(fresh, a.Row)
		} else {
			upserts = append(upserts, a.Row)
		}
	}
	return deletes, fresh, upserts, updates
}
