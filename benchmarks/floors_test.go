package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFloors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "floors.yaml")
	require.NoError(t, os.WriteFile(path, []byte("ci:\n  capture.rows: 0.9\n  apply.insert: 0.5\n  snapshot.orders: 1.2\nfull:\n  capture.rows: 2\n"), 0o644))
	f, err := loadFloors(path)
	require.NoError(t, err)
	r := &Results{Size: "ci", Scenarios: []string{"capture", "apply"}}
	r.Ratios = []Ratio{{Key: "capture.rows", Ratio: 0.95}, {Key: "apply.insert", Ratio: 0.4, Reference: "native"}}
	failed := f.check(r)
	require.Len(t, failed, 1, "%v", failed)
	require.Contains(t, failed[0], "apply.insert: ratio 0.40 < floor 0.50")

	// A floor for a scenario that ran must be measured; snapshot did not run.
	r.Ratios = r.Ratios[:1]
	failed = f.check(r)
	require.Len(t, failed, 1, "%v", failed)
	require.Contains(t, failed[0], "apply.insert: has a floor but was not measured")

	// Scenarios named scenario.workload own the ratio of their name only.
	require.NoError(t, os.WriteFile(path, []byte("ci:\n  trigger.cost: 0.5\n  trigger.capture: 0.3\n"), 0o644))
	f, err = loadFloors(path)
	require.NoError(t, err)
	r = &Results{Size: "ci", Scenarios: []string{"trigger.capture"}}
	failed = f.check(r)
	require.Equal(t, []string{"trigger.capture: has a floor but was not measured"}, failed)
	r.Ratios = []Ratio{{Key: "trigger.capture", Ratio: 0.2}}
	failed = f.check(r)
	require.Len(t, failed, 1, "%v", failed)
	require.Contains(t, failed[0], "trigger.capture: ratio 0.20 < floor 0.30")

	require.NoError(t, os.WriteFile(path, []byte("ci:\n  capture.rows: x\n"), 0o644))
	_, err = loadFloors(path)
	require.Error(t, err)
}

func TestShippedFloorsParse(t *testing.T) {
	f, err := loadFloors("floors.yaml")
	require.NoError(t, err)
	for _, size := range []string{"ci", "full"} {
		require.NotEmpty(t, f[size], "floors for size %s", size)
		for k, v := range f[size] {
			require.Greater(t, v, 0.0, k)
		}
	}
}

func TestMedianPercentile(t *testing.T) {
	require.Equal(t, 2.0, median([]float64{3, 1, 2}))
	require.Equal(t, 2.5, median([]float64{4, 1, 2, 3}))
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	require.Equal(t, 10.0, percentile(s, 100))
	require.Equal(t, 1.0, percentile(s, 0))
	require.Equal(t, 6.0, percentile(s, 50))
}

func TestMarkdownEscapesPipes(t *testing.T) {
	r := &Results{Size: "ci", Ratios: []Ratio{{Key: "snapshot.orders", Workload: "snapshot", Reference: "pg_dump -t | psql", Unit: "rows/s", Ratio: 1}}}
	require.Contains(t, r.markdown(), "| pg_dump -t \\| psql |")
}
