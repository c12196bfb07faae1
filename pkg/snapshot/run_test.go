package snapshot

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/apply"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// fakeSink is a sink, bulk-loading when bulk is set, that counts Close.
type fakeSink struct {
	closed *atomic.Int32
}

func (f *fakeSink) Apply(context.Context, *sink.Batch) error { return nil }
func (f *fakeSink) Close(context.Context) error              { f.closed.Add(1); return nil }

type fakeBulkSink struct{ fakeSink }

func (f *fakeBulkSink) Load(context.Context, *sink.BulkChunk, io.Reader) (int64, error) {
	return 0, nil
}
func (f *fakeBulkSink) Loaded(context.Context, string) (map[string]bool, error) { return nil, nil }

func testRunner(t *testing.T, parallelism int, open apply.OpenFunc) *Runner {
	t.Helper()
	r, err := New(Config{Mode: ModeInitial, Parallelism: parallelism, StateDir: t.TempDir(), Sink: "s", Open: open})
	require.NoError(t, err)
	return r
}

// TestOpenSinks: the workers' sinks of a bulk loader open concurrently
// (their connection latencies do not add up), the first sink is shared and
// never closed by the workers, and a failed open closes the others.
func TestOpenSinks(t *testing.T) {
	var closed atomic.Int32
	first := &fakeBulkSink{fakeSink{&closed}}

	t.Run("concurrent", func(t *testing.T) {
		closed.Store(0)
		// Each open waits until all three are in flight: opened one after
		// the other, the first would never return.
		var mu sync.Mutex
		inFlight := 0
		all := make(chan struct{})
		r := testRunner(t, 4, func(ctx context.Context) (sink.Sink, error) {
			mu.Lock()
			if inFlight++; inFlight == 3 {
				close(all)
			}
			mu.Unlock()
			select {
			case <-all:
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Minute):
				return nil, errors.New("the sinks were not opened concurrently")
			}
			return &fakeBulkSink{fakeSink{&closed}}, nil
		})
		ws := r.openSinks(t.Context(), first)
		sinks, err := ws.wait()
		require.NoError(t, err)
		require.Len(t, sinks, 4)
		require.Same(t, first, sinks[0])
		ws.close(t.Context())
		require.Equal(t, int32(3), closed.Load(), "the workers' sinks closed, the first not")
	})

	t.Run("failure", func(t *testing.T) {
		closed.Store(0)
		var n atomic.Int32
		r := testRunner(t, 4, func(ctx context.Context) (sink.Sink, error) {
			if n.Add(1) == 2 {
				return nil, errors.New("refused")
			}
			return &fakeBulkSink{fakeSink{&closed}}, nil
		})
		ws := r.openSinks(t.Context(), first)
		_, err := ws.wait()
		require.ErrorContains(t, err, "refused")
		ws.close(t.Context())
		require.Equal(t, int32(2), closed.Load(), "the sinks that opened are closed")
	})

	t.Run("not bulk", func(t *testing.T) {
		closed.Store(0)
		r := testRunner(t, 4, func(context.Context) (sink.Sink, error) {
			t.Error("a sink without bulk loading takes every row through the first sink")
			return nil, errors.New("unexpected")
		})
		plain := &fakeSink{&closed}
		ws := r.openSinks(t.Context(), plain)
		sinks, err := ws.wait()
		require.NoError(t, err)
		require.Equal(t, []sink.Sink{plain}, sinks)
		ws.close(t.Context())
		require.Zero(t, closed.Load())
	})
}
