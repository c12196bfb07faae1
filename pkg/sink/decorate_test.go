package sink_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/sink"
)

// Stand-in sinks with each optional ability: what is checked is the
// decorator, not a sink.
type plainSink struct{ applied *int }

func (p plainSink) Apply(context.Context, *sink.Batch) error { *p.applied++; return nil }
func (plainSink) Close(context.Context) error                { return nil }

type storeSink struct{ plainSink }

func (storeSink) Position(context.Context) (sink.Position, error) { return sink.Position{Seq: 7}, nil }

type asyncSink struct{ storeSink }

func (asyncSink) Durable() sink.Position { return sink.Position{Seq: 5} }
func (asyncSink) RefreshDurable(context.Context) (sink.Position, error) {
	return sink.Position{Seq: 6}, nil
}

type pacedSink struct{ asyncSink }

func (pacedSink) MinBatchDelay() time.Duration { return 42 * time.Millisecond }

// counting is a decorator that overrides Apply.
type counting struct {
	sink.Sink
	n *int
}

func (c counting) Apply(ctx context.Context, b *sink.Batch) error {
	*c.n++
	return c.Sink.Apply(ctx, b)
}

// TestDecorateKeepsTheInnerAbilities: a decorated sink applies through the
// decorator and has exactly the optional abilities of the sink inside.
func TestDecorateKeepsTheInnerAbilities(t *testing.T) {
	ctx := context.Background()
	var applied, counted int
	wrap := func(inner sink.Sink) sink.Sink { return sink.Decorate(counting{inner, &counted}, inner) }
	plain := plainSink{&applied}

	w := wrap(plain)
	require.NoError(t, w.Apply(ctx, &sink.Batch{}))
	require.Equal(t, 1, applied)
	require.Equal(t, 1, counted, "Apply goes through the decorator")
	_, ok := w.(sink.PositionStore)
	require.False(t, ok, "a plain sink stays plain")
	require.Zero(t, w.(sink.BatchPacer).MinBatchDelay(), "no pacing for a sink without it")

	w = wrap(storeSink{plain})
	pos, err := w.(sink.PositionStore).Position(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(7), pos.Seq)
	_, ok = w.(sink.AsyncCommitter)
	require.False(t, ok)

	w = wrap(asyncSink{storeSink{plain}})
	ac, ok := w.(sink.AsyncCommitter)
	require.True(t, ok, "AsyncCommitter hidden by the decorator")
	require.Equal(t, uint64(5), ac.Durable().Seq)
	d, err := ac.RefreshDurable(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(6), d.Seq)
	pos, err = ac.Position(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(7), pos.Seq)

	w = wrap(pacedSink{asyncSink{storeSink{plain}}})
	require.Equal(t, 42*time.Millisecond, w.(sink.BatchPacer).MinBatchDelay())
	_, ok = w.(sink.AsyncCommitter)
	require.True(t, ok)
	require.NoError(t, w.Apply(ctx, &sink.Batch{}))
	require.Equal(t, 2, counted)
}
