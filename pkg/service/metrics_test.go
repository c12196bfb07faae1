package service

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/status"
)

// Stand-in sinks with each optional ability: what is checked is the
// wrapper, not a sink.
type plainSink struct{}

func (plainSink) Apply(context.Context, *sink.Batch) error { return nil }
func (plainSink) Close(context.Context) error              { return nil }

type storeSink struct{ plainSink }

func (storeSink) Position(context.Context) (sink.Position, error) {
	return sink.Position{Seq: 7}, nil
}

type asyncSink struct{ storeSink }

func (asyncSink) Durable() sink.Position { return sink.Position{Seq: 5} }
func (asyncSink) RefreshDurable(context.Context) (sink.Position, error) {
	return sink.Position{Seq: 6}, nil
}

type pacedSink struct{ storeSink }

func (pacedSink) MinBatchDelay() time.Duration { return 42 * time.Millisecond }

// TestMeasuredSinkKeepsItsAbilities: the metrics wrapper must not hide what
// apply checks with type assertions — an AsyncCommitter seen as a plain
// PositionStore would be reported durable before it is.
func TestMeasuredSinkKeepsItsAbilities(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry(), func() *status.Report { return &status.Report{} })
	wrap := func(s sink.Sink) sink.Sink {
		w, err := m.wrapOpen("x", func(context.Context) (sink.Sink, error) { return s, nil })(context.Background())
		require.NoError(t, err)
		return w
	}
	ctx := context.Background()

	w := wrap(plainSink{})
	_, ok := w.(sink.PositionStore)
	require.False(t, ok)
	require.Zero(t, w.(sink.BatchPacer).MinBatchDelay(), "no pacing for a sink without it")

	w = wrap(storeSink{})
	pos, err := w.(sink.PositionStore).Position(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(7), pos.Seq)
	_, ok = w.(sink.AsyncCommitter)
	require.False(t, ok)

	w = wrap(asyncSink{})
	ac, ok := w.(sink.AsyncCommitter)
	require.True(t, ok, "AsyncCommitter hidden by the metrics wrapper")
	require.Equal(t, uint64(5), ac.Durable().Seq)
	d, err := ac.RefreshDurable(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(6), d.Seq)
	pos, err = ac.Position(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(7), pos.Seq)

	w = wrap(pacedSink{})
	require.Equal(t, 42*time.Millisecond, w.(sink.BatchPacer).MinBatchDelay())
}
