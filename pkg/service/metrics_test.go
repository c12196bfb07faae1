package service

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/status"
)

// asyncSink is a stand-in sink.AsyncCommitter: what is checked is the
// wrapper, not a sink.
type asyncSink struct{}

func (asyncSink) Apply(context.Context, *sink.Batch) error        { return nil }
func (asyncSink) Close(context.Context) error                     { return nil }
func (asyncSink) Position(context.Context) (sink.Position, error) { return sink.Position{Seq: 7}, nil }
func (asyncSink) Durable() sink.Position                          { return sink.Position{Seq: 5} }
func (asyncSink) RefreshDurable(context.Context) (sink.Position, error) {
	return sink.Position{Seq: 6}, nil
}

// TestMeasuredSinkKeepsItsAbilities: the metrics wrapper must not hide what
// apply checks with type assertions — an AsyncCommitter seen as a plain
// PositionStore would be reported durable before it is (sink.Decorate's
// test covers each ability).
func TestMeasuredSinkKeepsItsAbilities(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, func() *status.Report { return &status.Report{} })
	w, err := m.wrapOpen("x", func(context.Context) (sink.Sink, error) { return asyncSink{}, nil })(context.Background())
	require.NoError(t, err)
	ac, ok := w.(sink.AsyncCommitter)
	require.True(t, ok, "AsyncCommitter hidden by the metrics wrapper")
	require.Equal(t, uint64(5), ac.Durable().Seq)
	require.NoError(t, w.Apply(context.Background(), &sink.Batch{Rows: 3}))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var observed uint64
	for _, mf := range mfs {
		if mf.GetName() == "cdcd_sink_batch_rows" {
			observed = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	require.Equal(t, uint64(1), observed, "Apply goes through the metrics")
}
