package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// TestCaptureUntil: `cdcd capture --until LSN` exits 0 by itself once
// everything committed up to LSN is durable in the trail (a cut-over point;
// the benchmarks time capture with it), and CDCD_CPUPROFILE writes a
// profile of the run. A malformed --until is one clear error.
func TestCaptureUntil(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	pg := pgtest.StartT(t, pgtest.Options{})
	pg.ExecT(t, "postgres",
		`CREATE TABLE t (id int PRIMARY KEY)`,
		`CREATE PUBLICATION cdcd FOR ALL TABLES`,
		`SELECT pg_create_logical_replication_slot('cdcd', 'pgoutput')`,
		`INSERT INTO t SELECT generate_series(1, 100)`,
		`INSERT INTO t SELECT generate_series(101, 200)`)
	until := pg.MarkerT(t)
	bin := pgtest.BuildCdcdT(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cdcd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf("source:\n  dsn: %q\n  heartbeat: \"off\"\ntrail:\n  dir: %q\nlog:\n  format: json\n",
		pg.DSN("postgres"), filepath.Join(dir, "trail"))), 0o600))

	out, err := exec.Command(bin, "capture", "--config", cfg, "--until", "nonsense").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), `--until "nonsense"`)

	prof := filepath.Join(dir, "cpu.pprof")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "capture", "--config", cfg, "--until", until.String())
	cmd.Env = append(os.Environ(), "CDCD_CPUPROFILE="+prof)
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "capture --until must stop by itself: %s", out)

	r, err := trail.NewReader(filepath.Join(dir, "trail"), 0, trail.ReaderOptions{})
	require.NoError(t, err)
	defer r.Close()
	inserts, commits := 0, 0
	for {
		rec, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		switch rec.Type {
		case trail.RecordChange:
			inserts++
		case trail.RecordCommit:
			commits++
		}
	}
	require.Equal(t, 200, inserts, "every row committed before the marker is in the trail")
	require.Equal(t, 2+1, commits, "two inserts and the marker's transaction")
	st, err := os.Stat(prof)
	require.NoError(t, err)
	require.Positive(t, st.Size(), "a CPU profile was written")
}
