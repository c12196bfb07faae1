package apply

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// txLSN is the FinalLSN writeTrail gives its n-th transaction (1-based).
func txLSN(n int) change.LSN { return change.LSN(0x1000000 + n*0x100) }

func TestHoldStopsBeforeTheBoundaryAndMovesOn(t *testing.T) {
	dir := t.TempDir()
	tw := writeTrail(t, dir, 20, 1, false)
	fs := &fakeSink{}
	w, err := New(Config{Name: "x", TrailDir: dir, Durable: tw.Durable, MaxRows: 3},
		func(context.Context) (sink.Sink, error) { return storingSink{fs}, nil })
	require.NoError(t, err)
	h := w.Hold(txLSN(11), 0)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-errc) }()

	waitReached(t, h)
	require.Equal(t, want(10), ids(fs.snapshot()), "everything before the boundary, nothing at or after it")
	require.Equal(t, txLSN(10)+0x10, h.Position().EndLSN)
	require.Equal(t, txLSN(10)+0x10, fs.end(), "committed on the target before the hold is reported")

	// A later boundary replaces the hold: the worker moves on to it.
	h2 := w.Hold(txLSN(15), 0)
	<-h.Released()
	waitReached(t, h2)
	require.Equal(t, want(14), ids(fs.snapshot()))
	require.Same(t, h2, w.CurrentHold())

	w.ReleaseHold(h2)
	require.Nil(t, w.CurrentHold())
	require.Eventually(t, func() bool { return fs.end() == tw.LastEndLSN() }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, want(20), ids(fs.snapshot()))
}

func TestHoldTimesOut(t *testing.T) {
	dir := t.TempDir()
	tw := writeTrail(t, dir, 5, 1, false)
	fs := &fakeSink{}
	w, err := New(Config{Name: "x", TrailDir: dir, Durable: tw.Durable},
		func(context.Context) (sink.Sink, error) { return storingSink{fs}, nil })
	require.NoError(t, err)
	h := w.Hold(txLSN(3), 100*time.Millisecond)
	runUntil(t, w, func() bool { return fs.end() == tw.LastEndLSN() })
	require.Equal(t, want(5), ids(fs.snapshot()), "a holder that never releases does not stop the sink for good")
	select {
	case <-h.Released():
	default:
		t.Fatal("hold not released after its time-out")
	}
	require.Nil(t, w.CurrentHold())
}

func TestHoldBeyondTheTrailWaitsForATransaction(t *testing.T) {
	dir := t.TempDir()
	tw := writeTrail(t, dir, 3, 1, false)
	fs := &fakeSink{}
	w, err := New(Config{Name: "x", TrailDir: dir, Durable: tw.Durable, Wake: tw.Changed},
		func(context.Context) (sink.Sink, error) { return storingSink{fs}, nil })
	require.NoError(t, err)
	h := w.Hold(txLSN(5), 0)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-errc) }()
	require.Eventually(t, func() bool { return fs.end() == tw.LastEndLSN() }, 10*time.Second, 5*time.Millisecond)
	select {
	case <-h.Reached():
		t.Fatal("reached before any transaction at the boundary was read")
	default:
	}
	appendTx(t, tw, txLSN(4), "4")
	appendTx(t, tw, txLSN(5), "5")
	waitReached(t, h)
	require.Equal(t, want(4), ids(fs.snapshot()))
}

func waitReached(t *testing.T, h *Hold) {
	t.Helper()
	select {
	case <-h.Reached():
	case <-time.After(10 * time.Second):
		t.Fatal("hold not reached")
	}
}
