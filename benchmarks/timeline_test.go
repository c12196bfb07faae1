package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// TestTimeline samples a real server that one session keeps busy: the
// target's CPU shows on its rows, the session as active on CPU, and the
// mean line sums the rows.
func TestTimeline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	srv := pgtest.StartT(t, pgtest.Options{Name: "timeline"})
	busy := make(chan error, 1)
	go func() {
		// ~1.5 s of CPU in one backend.
		busy <- srv.Exec(context.Background(), "postgres", `DO $$ BEGIN WHILE clock_timestamp() < statement_timestamp() + interval '1.5 s' LOOP END LOOP; END $$`)
	}()
	path := filepath.Join(t.TempDir(), "run.tsv")
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	// This process stands in for cdcd; src and dst are the same server.
	require.NoError(t, sample(ctx, path, srv, srv, os.Getpid()))
	require.NoError(t, <-busy)

	b, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.GreaterOrEqual(t, len(lines), 5, "a header, 1.2 s of 250ms rows and the mean:\n%s", b)
	assert.Equal(t, "seconds\tsource_cores\ttarget_cores\tcdcd_cores\twalsender\ttarget_sessions", lines[0])
	rows := lines[1 : len(lines)-1]
	var target float64
	for _, r := range rows {
		f := strings.Split(r, "\t")
		require.Len(t, f, 6, r)
		v, err := strconv.ParseFloat(f[2], 64)
		require.NoError(t, err, r)
		target += v
		assert.Equal(t, "-", f[4], "no walsender on this server: %s", r)
	}
	// The busy backend has a core to itself on an idle machine; a loaded
	// one (a parallel test run) may give it much less, never none.
	assert.Greater(t, target/float64(len(rows)), 0.2, "the busy backend's CPU shows on the target:\n%s", b)
	assert.Contains(t, string(b), "active:CPU", "the busy session is active on CPU:\n%s", b)
	mean := strings.Split(lines[len(lines)-1], "\t")
	require.Len(t, mean, 4, lines[len(lines)-1])
	span, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(mean[0], "# mean over "), "s"), 64)
	require.NoError(t, err, mean[0])
	assert.InDelta(t, 1.0, span, 0.5, "the sampled span: 1.2 s less the connects")
	m, err := strconv.ParseFloat(mean[2], 64)
	require.NoError(t, err)
	assert.Greater(t, m, 0.2, "the mean shows the busy backend's CPU")
}
