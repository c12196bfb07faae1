package pipeline_test

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cdcd-io/cdcd/internal/pipetest"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
)

func testLogger() *slog.Logger {
	if os.Getenv("CDCD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// yamlConfig is a cdcd config from source to one postgres sink.
func yamlConfig(source, primary, target *pgtest.Cluster, trailDir string) string {
	s := fmt.Sprintf(`
source:
  dsn: %q
  create: true
  heartbeat: 1s
  status_interval: 200ms
trail:
  dir: %q
  segment_bytes: 1MiB
  purge_interval: 1s
sinks:
  - name: target
    kind: postgres
    dsn: %q
    batch: { max_rows: 5000, max_delay: 50ms }
log:
  format: text
`, source.DSN("postgres"), trailDir, target.DSN("postgres"))
	if primary != nil {
		s = strings.Replace(s, "  create: true\n", fmt.Sprintf("  create: true\n  primary_dsn: %q\n", primary.DSN("postgres")), 1)
	}
	return s
}

type running = pipetest.Running

func startPipeline(t testing.TB, yaml string) *running {
	t.Helper()
	return pipetest.Start(t, yaml, testLogger())
}

func waitSlot(t testing.TB, c *pgtest.Cluster) { t.Helper(); c.WaitSlotActiveT(t, "cdcd") }

func queryRow(c *pgtest.Cluster, sql string, dst ...any) error { return c.QueryRow(sql, dst...) }

func marker(t testing.TB, c *pgtest.Cluster) change.LSN { t.Helper(); return c.MarkerT(t) }

// tableDigest is a table's row count and an ordered hash of its rows.
func tableDigest(t testing.TB, c *pgtest.Cluster, table, orderBy string) string {
	t.Helper()
	var n int64
	var h *string
	require.NoError(t, queryRow(c, fmt.Sprintf(`SELECT count(*), md5(string_agg(x::text, '|' ORDER BY %s)) FROM %s x`, orderBy, table), &n, &h))
	hs := "<empty>"
	if h != nil {
		hs = *h
	}
	return fmt.Sprintf("%d rows, md5 %s", n, hs)
}

// requireSameTables compares tables between source and target.
func requireSameTables(t testing.TB, src, dst *pgtest.Cluster, tables map[string]string) {
	t.Helper()
	for table, orderBy := range tables {
		require.Equal(t, tableDigest(t, src, table, orderBy), tableDigest(t, dst, table, orderBy), "table %s", table)
	}
}

var pgbenchTables = map[string]string{
	"pgbench_accounts": "aid",
	"pgbench_branches": "bid",
	"pgbench_tellers":  "tid",
	"pgbench_history":  "tid, bid, aid, delta, mtime",
}

func pgbench(t testing.TB, c *pgtest.Cluster, args ...string) string {
	t.Helper()
	bin, err := pgtest.BinDir(pgtest.V15)
	require.NoError(t, err)
	cmd := exec.Command(filepath.Join(bin, "pgbench"), append(args, c.DSN("postgres"))...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "pgbench %v: %s", args, out)
	return string(out)
}

// buildCdcd builds the cdcd binary once per test binary.
func buildCdcd(t testing.TB) string { t.Helper(); return pgtest.BuildCdcdT(t) }
