package oracle

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// keysOf lists the ids of rows.
func keysOf(rows []change.Row) string {
	var ks []string
	for _, r := range rows {
		ks = append(ks, r[0].String())
	}
	return strings.Join(ks, ",")
}

// TestPlan checks which statement each key ends in: a key is in exactly
// one, INSERT only when its first change was an insert, UPDATE of full
// rows when the row was on the target, partial UPDATEs without the
// unchanged columns.
func TestPlan(t *testing.T) {
	rel := ordersRel()
	keyChange := func(from, to string, note string) *change.Change {
		return &change.Change{Op: change.OpUpdate, Relation: rel, Old: row(from, "<null>", "<null>", "<null>"), OldKeyOnly: true,
			New: row(to, "c", "1", note)}
	}
	for _, tc := range []struct {
		name                              string
		changes                           []*change.Change
		deletes, inserts, updates, partly string
		steps                             int
	}{
		{"insert", []*change.Change{ins(rel, "1", "a", "1", "n")}, "", "1", "", "", 1},
		{"insert then update: one insert of the final row", []*change.Change{ins(rel, "1", "a", "1", "n"), upd(rel, "1", "b", "2", "<unchanged>")}, "", "1", "", "", 1},
		{"insert then delete: a delete that finds nothing", []*change.Change{ins(rel, "1", "a", "1", "n"), del(rel, "1")}, "1", "", "", "", 1},
		{"delete then insert: the row was there, full update", []*change.Change{del(rel, "1"), ins(rel, "1", "a", "1", "n")}, "", "", "1", "", 1},
		{"update full", []*change.Change{upd(rel, "1", "a", "1", "n")}, "", "", "1", "", 1},
		{"update with unchanged TOAST", []*change.Change{upd(rel, "1", "a", "1", "<unchanged>")}, "", "", "", "1", 1},
		{"update then delete", []*change.Change{upd(rel, "1", "a", "1", "<unchanged>"), del(rel, "1")}, "1", "", "", "", 1},
		{"key change, full row", []*change.Change{keyChange("1", "2", "n")}, "1", "2", "", "", 1},
		{"key change after insert, TOAST completed from it", []*change.Change{ins(rel, "1", "a", "1", "n"), keyChange("1", "2", "<unchanged>")}, "1", "2", "", "", 1},
		{"key change with TOAST only on the target: a move barrier", []*change.Change{ins(rel, "5", "a", "1", "n"), keyChange("1", "2", "<unchanged>"), ins(rel, "6", "a", "1", "n")}, "", "6", "", "", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps, err := buildPlan(batch(1, tc.changes...).Txs)
			require.NoError(t, err)
			require.Len(t, steps, tc.steps)
			last := steps[len(steps)-1]
			require.NotNil(t, last.Segment)
			w := split(last.Segment.Tables[0])
			require.Equal(t, tc.deletes, keysOf(w.deletes), "deletes")
			require.Equal(t, tc.inserts, keysOf(w.inserts), "inserts")
			require.Equal(t, tc.updates, keysOf(w.updates), "full updates")
			var partly []change.Row
			for _, g := range w.partial {
				partly = append(partly, g.Rows...)
				require.Equal(t, []int{1, 2}, g.Cols, "the unchanged note is left out")
			}
			require.Equal(t, tc.partly, keysOf(partly), "partial updates")
		})
	}
	// The completed key change carries the note from the insert.
	steps, err := buildPlan(batch(1, ins(rel, "1", "a", "1", "n"), keyChange("1", "2", "<unchanged>")).Txs)
	require.NoError(t, err)
	require.Equal(t, "n", split(steps[0].Segment.Tables[0]).inserts[0][3].String())
}

func TestPlanErrors(t *testing.T) {
	rel := ordersRel()
	keyless := &change.Relation{Schema: "public", Name: "log", ReplicaIdentity: 'n', Columns: []change.Column{{Name: "x", TypeOID: 25}}}
	for _, tc := range []struct {
		c    *change.Change
		want string
	}{
		{&change.Change{Op: change.OpUpdate, Relation: keyless, New: row("a")}, "table public.log has no primary key or replica identity"},
		{&change.Change{Op: change.OpInsert, Relation: rel, New: row("1", "a")}, "new row has 2 columns, the relation 4"},
		{&change.Change{Op: change.OpInsert, Relation: rel, New: row("1", "a", "1", "<unchanged>")}, "column note is an unchanged TOAST value"},
		{&change.Change{Op: change.OpInsert, Relation: rel, New: change.Row{change.Text("1"), {Kind: change.ValueBinary, Data: []byte{1}}, change.Null, change.Null}},
			"column customer is a binary value: the oracle sink takes text values only"},
		{&change.Change{Op: change.OpDelete, Relation: rel}, "carries no old key"},
	} {
		_, err := buildPlan(batch(1, tc.c).Txs)
		require.ErrorContains(t, err, tc.want)
	}
}

// ReadPosition (cdcd status while cdcd is down) on a host without the
// Instant Client says so; the password never shows.
func TestReadPositionNoClient(t *testing.T) {
	_, err := ReadPosition(context.Background(), Config{Name: "ora", DSN: `user=cdc connectString="127.0.0.1:9/XE"`, Password: "s3cr3t"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cr3t")
	if !errors.Is(err, ErrNoClient) {
		require.True(t, sink.IsRetriable(err), "with a client: a retriable connection error, got %v", err)
	}
}
