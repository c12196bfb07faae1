package mapping

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

func testMap(t *testing.T) *Map {
	m, err := New(Config{
		Include: []string{"public.*", "app.orders"},
		Exclude: []string{"public.audit_*"},
		Tables: []Table{{From: "public.employee", To: "hr.employees", ExcludeColumns: []string{"ssn"},
			RenameColumns: map[string]string{"name": "full_name"}}, {From: "app.orders", To: "orders2"}},
	})
	require.NoError(t, err)
	return m
}

func TestSelectAndTarget(t *testing.T) {
	m := testMap(t)
	for name, want := range map[[2]string]bool{
		{"public", "employee"}: true, {"public", "audit_log"}: false, {"app", "orders"}: true, {"app", "other"}: false,
	} {
		require.Equal(t, want, m.Includes(name[0], name[1]), name)
	}
	s, n := m.Target("public", "employee")
	require.Equal(t, "hr.employees", s+"."+n)
	s, n = m.Target("app", "orders")
	require.Equal(t, "app.orders2", s+"."+n)
	_, ok := m.Column("public", "employee", "ssn")
	require.False(t, ok)
	c, _ := m.Column("public", "employee", "name")
	require.Equal(t, "full_name", c)
}

func TestBadConfig(t *testing.T) {
	_, err := New(Config{Include: []string{"noschema"}})
	require.ErrorContains(t, err, "want schema.table")
	_, err = New(Config{Tables: []Table{{From: "a.b", To: "c.d"}, {From: "a.e", To: "c.d"}}})
	require.ErrorContains(t, err, "both map to c.d")
}

type recorder struct{ got []*sink.Batch }

func (r *recorder) Apply(_ context.Context, b *sink.Batch) error {
	r.got = append(r.got, b)
	return nil
}
func (r *recorder) Close(context.Context) error { return nil }

// TestSinkRewrites: relations and rows are mapped, excluded tables dropped,
// changes a snapshot holds (commit before its point) skipped.
func TestSinkRewrites(t *testing.T) {
	emp := &change.Relation{Schema: "public", Name: "employee", Columns: []change.Column{{Name: "id"}, {Name: "name"}, {Name: "ssn"}, {Name: "dept"}}, PrimaryKey: []int{0}}
	audit := &change.Relation{Schema: "public", Name: "audit_log", Columns: []change.Column{{Name: "id"}}}
	row := change.Row{change.Text("1"), change.Text("Ann"), change.Text("123"), change.Text("eng")}
	var rec recorder
	s := Wrap(&rec, testMap(t), map[string]change.LSN{"public.employee": 100})
	b := &sink.Batch{Txs: []sink.Tx{
		{Tx: &change.Tx{FinalLSN: 50}, Changes: []*change.Change{{Op: change.OpInsert, Relation: emp, New: row}}},
		{Tx: &change.Tx{FinalLSN: 150}, Changes: []*change.Change{
			{Op: change.OpInsert, Relation: emp, New: row},
			{Op: change.OpInsert, Relation: audit, New: change.Row{change.Text("1")}},
			{Op: change.OpTruncate, Truncate: &change.Truncate{Relations: []*change.Relation{emp, audit}}},
		}},
	}}
	require.NoError(t, s.Apply(context.Background(), b))
	out := rec.got[0]
	require.Empty(t, out.Txs[0].Changes, "committed before the snapshot's point")
	require.Len(t, out.Txs[1].Changes, 2)
	c := out.Txs[1].Changes[0]
	require.Equal(t, "hr.employees", c.Relation.QualifiedName())
	require.Equal(t, []string{"id", "full_name", "dept"}, []string{c.Relation.Columns[0].Name, c.Relation.Columns[1].Name, c.Relation.Columns[2].Name})
	require.Equal(t, []int{0}, c.Relation.PrimaryKey)
	require.Equal(t, change.Row{change.Text("1"), change.Text("Ann"), change.Text("eng")}, c.New)
	tr := out.Txs[1].Changes[1].Truncate
	require.Len(t, tr.Relations, 1)
	require.Equal(t, "hr.employees", tr.Relations[0].QualifiedName())
	require.Len(t, emp.Columns, 4, "the source relation is not modified")
}

// TestForwardedChunkIsNotSkippedBlindly: a chunk of a transaction forwarded
// before its commit (FinalLSN 0) is applied when its changes are past the
// snapshot's point (its commit is too), and refused — never dropped — when
// one is before it, naming the remedy.
func TestForwardedChunkIsNotSkippedBlindly(t *testing.T) {
	emp := &change.Relation{Schema: "public", Name: "employee", Columns: []change.Column{{Name: "id"}, {Name: "name"}, {Name: "ssn"}, {Name: "dept"}}, PrimaryKey: []int{0}}
	row := change.Row{change.Text("1"), change.Text("Ann"), change.Text("123"), change.Text("eng")}
	var rec recorder
	s := Wrap(&rec, testMap(t), map[string]change.LSN{"public.employee": 100})
	early := &change.Tx{XID: 7}
	ok := &sink.Batch{Partial: true, Txs: []sink.Tx{{Tx: early, Changes: []*change.Change{{Op: change.OpInsert, LSN: 120, Relation: emp, New: row}}}}}
	require.NoError(t, s.Apply(context.Background(), ok))
	require.Len(t, rec.got[0].Txs[0].Changes, 1, "past the point: applied")
	for _, c := range []*change.Change{
		{Op: change.OpInsert, LSN: 90, Relation: emp, New: row},
		{Op: change.OpTruncate, LSN: 90, Truncate: &change.Truncate{Relations: []*change.Relation{emp}}},
	} {
		err := s.Apply(context.Background(), &sink.Batch{Partial: true, Txs: []sink.Tx{{Tx: early, Changes: []*change.Change{c}}}})
		require.ErrorContains(t, err, "public.employee")
		require.ErrorContains(t, err, "source.forward_streamed: off")
	}
	require.Len(t, rec.got, 1, "nothing more reached the sink")
}

// asyncRecorder is a recorder that commits asynchronously, as the postgres
// sink does.
type asyncRecorder struct{ recorder }

func (*asyncRecorder) Position(context.Context) (sink.Position, error) {
	return sink.Position{Seq: 3}, nil
}
func (*asyncRecorder) Durable() sink.Position { return sink.Position{Seq: 2} }
func (*asyncRecorder) RefreshDurable(context.Context) (sink.Position, error) {
	return sink.Position{Seq: 2}, nil
}

// TestWrapKeepsAsyncCommit: the mapping decorator (used with any mapping
// or snapshot) must leave the sink an AsyncCommitter, or apply would take
// its commits as durable before they are flushed.
func TestWrapKeepsAsyncCommit(t *testing.T) {
	var rec asyncRecorder
	s := Wrap(&rec, testMap(t), nil)
	ac, ok := s.(sink.AsyncCommitter)
	require.True(t, ok)
	require.Equal(t, uint64(2), ac.Durable().Seq)
	require.NoError(t, s.Apply(context.Background(), &sink.Batch{}))
	require.Len(t, rec.got, 1, "Apply goes through the mapping to the inner sink")
	_, ok = Wrap(&rec.recorder, testMap(t), nil).(sink.PositionStore)
	require.False(t, ok)
}
