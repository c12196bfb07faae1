package postgres

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// describePlan renders steps compactly: per segment and table the deletes
// (keys), fresh inserts ("new", rows), upserts (rows) and update groups
// (columns: rows); "~" is an
// unchanged value.
func describePlan(steps []step) []string {
	var out []string
	for _, st := range steps {
		switch {
		case st.Truncate != nil:
			var names []string
			for _, r := range st.Truncate.Relations {
				names = append(names, r.Name)
			}
			out = append(out, "truncate "+strings.Join(names, ","))
		case st.Move != nil:
			out = append(out, "move "+st.Move.Rel.Name+" "+rowString(st.Move.Old)+" -> "+rowString(st.Move.New))
		case st.Segment != nil:
			for _, ops := range st.Segment.Tables {
				var parts []string
				if len(ops.Keys) == 0 {
					for _, r := range ops.Inserts {
						parts = append(parts, "ins "+rowString(r))
					}
				}
				if ops.Actions != nil {
					dels, fresh, ups, upds := split(ops)
					for _, r := range dels {
						parts = append(parts, "del "+r[ops.Keys[0]].String())
					}
					for _, r := range fresh {
						parts = append(parts, "new "+rowString(r))
					}
					for _, r := range ups {
						parts = append(parts, "ups "+rowString(r))
					}
					for _, g := range upds {
						var rows []string
						for _, r := range g.Rows {
							rows = append(rows, rowString(r))
						}
						parts = append(parts, "upd"+sink.ColumnSignature(g.Cols)+" "+strings.Join(rows, " "))
					}
				}
				out = append(out, ops.Rel.Name+": "+strings.Join(parts, "; "))
			}
		}
	}
	return out
}

func rowString(r change.Row) string {
	var vals []string
	for _, v := range r {
		switch v.Kind {
		case change.ValueUnchanged:
			vals = append(vals, "~")
		case change.ValueAbsent:
			vals = append(vals, "_")
		case change.ValueNull:
			vals = append(vals, "null")
		default:
			vals = append(vals, v.String())
		}
	}
	return "(" + strings.Join(vals, ",") + ")"
}

func TestPlan(t *testing.T) {
	r := rel("app.t", "id pk", "v", "n")
	h := rel("app.h", "a", "b")
	r2 := rel("app.t", "id pk", "v")
	full := rel("app.f", "id pk", "v", "n")
	full.ReplicaIdentity = 'f'
	fullUpd := func(old, new change.Row) *change.Change {
		return &change.Change{Op: change.OpUpdate, Relation: full, Old: old, New: new}
	}
	tests := []struct {
		name    string
		changes []*change.Change
		want    []string
	}{
		{"insert update delete",
			[]*change.Change{ins(r, "1", "a", "1"), ins(r, "2", "b", "2"), upd(r, "1", "A", "1"), del(r, "2")},
			[]string{"t: del 2; new (1,A,1)"}},
		{"insert then delete",
			[]*change.Change{ins(r, "1", "a", "1"), del(r, "1")},
			[]string{"t: del 1"}},
		{"insert delete insert",
			[]*change.Change{ins(r, "1", "a", "1"), del(r, "1"), ins(r, "1", "b", "2")},
			[]string{"t: new (1,b,2)"}},
		{"key change",
			[]*change.Change{updKey(r, []string{"2"}, "100", "b", "2")},
			[]string{"t: del 2; ups (100,b,2)"}},
		{"key swap through temporary key",
			[]*change.Change{updKey(r, []string{"1"}, "-1", "a", "1"), updKey(r, []string{"2"}, "1", "b", "2"), updKey(r, []string{"-1"}, "2", "a", "1")},
			[]string{"t: del -1; ups (1,b,2); ups (2,a,1)"}},
		{"partial update without image",
			[]*change.Change{upd(r, "1", unch, "5")},
			[]string{"t: upd2, (1,~,5)"}},
		{"partial updates merge",
			[]*change.Change{upd(r, "1", unch, "5"), upd(r, "1", "x", unch), upd(r, "2", unch, "6")},
			[]string{"t: upd1,2, (1,x,5); upd2, (2,~,6)"}},
		{"partial update completed from insert",
			[]*change.Change{ins(r, "1", "big", "1"), upd(r, "1", unch, "2")},
			[]string{"t: new (1,big,2)"}},
		{"partial update after delete is dropped",
			[]*change.Change{del(r, "1"), upd(r, "1", unch, "2")},
			[]string{"t: del 1"}},
		{"only unchanged values: nothing to write",
			[]*change.Change{upd(r, "1", unch, unch)},
			[]string{"t: "}},
		{"key change with unchanged value, image in batch",
			[]*change.Change{ins(r, "1", "big", "1"), updKey(r, []string{"1"}, "2", unch, "2")},
			[]string{"t: del 1; ups (2,big,2)"}},
		{"key change with unchanged value, no image: move barrier",
			[]*change.Change{ins(r, "5", "e", "5"), upd(r, "1", unch, "0"), updKey(r, []string{"1"}, "2", unch, "2"), upd(r, "2", unch, "3")},
			[]string{"t: new (5,e,5); upd2, (1,~,0)", "move t (1,_,_) -> (2,~,2)", "t: upd2, (2,~,3)"}},
		{"full old row completes unchanged values",
			[]*change.Change{fullUpd(row("1", "big", "1"), row("1", unch, "2")), fullUpd(row("2", "b", "2"), row("3", unch, "3"))},
			[]string{"f: del 2; ups (1,big,2); ups (3,b,3)"}},
		{"truncate is a barrier",
			[]*change.Change{ins(r, "1", "a", "1"), trunc(false, false, r, h), ins(r, "1", "b", "1"), ins(h, "1", "x")},
			[]string{"t: new (1,a,1)", "truncate t,h", "t: new (1,b,1)", "h: ins (1,x)"}},
		{"keyless table keeps inserts in order",
			[]*change.Change{ins(h, "1", "x"), ins(h, "1", "x"), ins(h, "0", nil)},
			[]string{"h: ins (1,x); ins (1,x); ins (0,null)"}},
		{"schema change is a barrier",
			[]*change.Change{ins(r, "1", "a", "1"), ins(r2, "2", "b"), ins(r2, "3", "c")},
			[]string{"t: new (1,a,1)", "t: new (2,b); new (3,c)"}},
		{"messages are skipped",
			[]*change.Change{heartbeat(), ins(r, "1", "a", "1"), heartbeat()},
			[]string{"t: new (1,a,1)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, err := buildPlan([]sink.Tx{tx(tt.changes...)})
			require.NoError(t, err)
			require.Equal(t, tt.want, describePlan(steps))
		})
	}
}

func TestPlanErrors(t *testing.T) {
	r := rel("app.t", "id pk", "v")
	h := rel("public.h", "a", "b")
	tests := []struct {
		name string
		c    *change.Change
		want string
	}{
		{"update on keyless", upd(h, "1", "x"), "table public.h has no primary key or replica identity: cdcd cannot apply updates/deletes to it; add a primary key"},
		{"delete on keyless", &change.Change{Op: change.OpDelete, Relation: h, Old: row("1", "x")}, "table public.h has no primary key"},
		{"delete without old", &change.Change{Op: change.OpDelete, Relation: r}, "carries no old key"},
		{"binary", ins(r, "1", change.Value{Kind: change.ValueBinary}), "column v is a binary value"},
		{"unchanged in insert", ins(r, "1", unch), "column v is an unchanged TOAST value"},
		{"null key", ins(r, nil, "x"), "new key column id of app.t is null"},
		{"short row", ins(r, "1"), "new row has 1 columns, the relation 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := buildPlan([]sink.Tx{tx(tt.c)})
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestEncodeKeyIsInjective(t *testing.T) {
	r := rel("app.t", "a pk", "b pk")
	k1, err := sink.KeyString(r, r.KeyColumns(), row("ab", "c"), "new")
	require.NoError(t, err)
	k2, err := sink.KeyString(r, r.KeyColumns(), row("a", "bc"), "new")
	require.NoError(t, err)
	require.NotEqual(t, k1, k2)
}
