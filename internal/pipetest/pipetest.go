// Package pipetest runs a cdcd pipeline from a YAML configuration in the
// background of a test: the one harness shared by the pipeline, snapshot
// and Kafka tests.
package pipetest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/config"
	"github.com/cdcd-io/cdcd/pkg/pipeline"
)

// Running is a pipeline running in the background of a test.
type Running struct {
	P      *pipeline.Pipeline
	Cancel context.CancelFunc
	// Done receives Run's result once; a reader that takes it must put it
	// back for the others (Stop, the cleanup).
	Done chan error
}

// Start parses yaml, builds the pipeline and runs it until the test ends.
func Start(t testing.TB, yaml string, log *slog.Logger) *Running {
	t.Helper()
	f, err := config.Parse([]byte(yaml))
	require.NoError(t, err)
	p, err := pipeline.New(f.PipelineConfig(log))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{P: p, Cancel: cancel, Done: make(chan error, 1)}
	go func() { r.Done <- p.Run(ctx) }()
	t.Cleanup(func() {
		r.Cancel()
		select {
		case <-r.Done:
		case <-time.After(time.Minute):
		}
	})
	return r
}

// WaitApplied waits until the first sink has applied a transaction ending
// past lsn; it fails the test when the pipeline stops or time runs out.
func (r *Running) WaitApplied(t testing.TB, lsn change.LSN, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := r.P.Workers()[0].Stats()
		if st.Position.EndLSN > lsn {
			return
		}
		select {
		case err := <-r.Done:
			r.Done <- err
			t.Fatalf("pipeline stopped early: %v (sink: %s)", err, st.LastError)
		default:
		}
		if time.Now().After(deadline) {
			var snap any
			if s := r.P.Snapshots()[0]; s != nil {
				snap = s.Progress()
			}
			t.Fatalf("sink at %s, not past %s after %s; capture %+v; snapshot %+v; sink %+v",
				st.Position.EndLSN, lsn, timeout, r.P.Capture().Stats(), snap, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop cancels the pipeline and requires a clean stop.
func (r *Running) Stop(t testing.TB) {
	t.Helper()
	r.Cancel()
	require.NoError(t, <-r.Done)
	r.Done <- nil
}
