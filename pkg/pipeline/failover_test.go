package pipeline_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/checkpoint"
)

// TestPromotionPG17: a PG17 primary with a physical standby that
// synchronizes cdcd's failover slot (sync_replication_slots, and the
// standby's slot in the primary's synchronized_standby_slots). While
// pgbench runs the primary is killed (like pg_ctl stop -m immediate) and
// the standby promoted; cdcd, given both hosts with
// target_session_attrs=read-write, continues on the new primary: the
// target equals it and pgbench_history has exactly its row count.
func TestPromotionPG17(t *testing.T) {
	if testing.Short() {
		t.Skip("real servers, a promotion")
	}
	primary := pgtest.StartT(t, pgtest.Options{Version: pgtest.V17, Name: "primary"})
	dst := pgtest.StartT(t, pgtest.Options{Version: pgtest.V17, Name: "target"})
	pgbench(t, primary, "-i", "-s", "1", "-q")
	pgbench(t, dst, "-i", "-s", "1", "-q")
	standby := primary.StartStandbyT(t, pgtest.Options{Conf: map[string]string{
		"sync_replication_slots": "on",
		// Slot synchronization needs a database in the conninfo.
		"primary_conninfo": fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres application_name=standby", primary.Port),
	}})
	var physical string
	require.NoError(t, queryRow(primary, `SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'physical'`, &physical))
	primary.ExecT(t, "postgres", fmt.Sprintf(`ALTER SYSTEM SET synchronized_standby_slots = '%s'`, physical), `SELECT pg_reload_conf()`)

	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/postgres?sslmode=disable&target_session_attrs=read-write", primary.Port, standby.Port)
	trailDir := t.TempDir()
	yaml := strings.Replace(yamlConfig(primary, nil, dst, trailDir), fmt.Sprintf("%q", primary.DSN("postgres")), fmt.Sprintf("%q", dsn), 1)
	require.Contains(t, yaml, dsn)
	r := startPipeline(t, yaml)
	waitSlot(t, primary)
	var failover bool
	require.NoError(t, queryRow(primary, `SELECT failover FROM pg_replication_slots WHERE slot_name = 'cdcd'`, &failover))
	require.True(t, failover, "cdcd created a failover slot")

	// The standby's copy of the slot must be persistent before a
	// promotion can use it; running-xacts records let it catch up.
	ctx, cancel := context.WithCancel(context.Background())
	stopSnapshots := primary.LogStandbySnapshots(ctx, 300*time.Millisecond)
	require.Eventually(t, func() bool {
		var ok bool
		return queryRow(standby, `SELECT coalesce(bool_and(synced AND NOT temporary), false) FROM pg_replication_slots WHERE slot_name = 'cdcd'`, &ok) == nil && ok
	}, 2*time.Minute, 200*time.Millisecond, "the standby did not synchronize the slot")

	pgbin, err := pgtest.BinDir(pgtest.V15)
	require.NoError(t, err)
	bench := exec.Command(filepath.Join(pgbin, "pgbench"), "-c", "4", "-j", "2", "-T", "30", "-n", primary.DSN("postgres"))
	require.NoError(t, bench.Start())
	require.Eventually(t, func() bool {
		var n int64
		return queryRow(dst, `SELECT count(*) FROM pgbench_history`, &n) == nil && n > 1000
	}, time.Minute, 50*time.Millisecond)
	cancel()
	require.NoError(t, stopSnapshots())
	require.NoError(t, primary.Kill())
	_ = bench.Wait() // its connections died with the primary
	standby.ExecT(t, "postgres", `SELECT pg_promote()`)

	pgbench(t, standby, "-c", "2", "-j", "2", "-T", "4", "-n")
	r.WaitApplied(t, marker(t, standby), 3*time.Minute)
	r.Stop(t)
	requireSameTables(t, standby, dst, pgbenchTables)
	var n1, n2 int64
	require.NoError(t, queryRow(standby, `SELECT count(*) FROM pgbench_history`, &n1))
	require.NoError(t, queryRow(dst, `SELECT count(*) FROM pgbench_history`, &n2))
	require.Equal(t, n1, n2, "pgbench_history has no key: duplicates or losses would show here")
	require.Positive(t, r.P.Capture().Stats().Reconnects)
	tli, ok, err := checkpoint.New(filepath.Join(trailDir, "source.timeline")).Load()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint64(2), tli, "the timeline the trail continues from is recorded for a restart")
	t.Logf("%d history rows, identical after the promotion", n1)
}
