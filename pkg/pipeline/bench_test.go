package pipeline_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// BenchmarkPGToPGVsNative measures cdcd (capture → trail → apply) against
// PostgreSQL's native logical replication (publication + subscription, which
// applies inside the server in C), each on its own source/target pair of
// servers on this machine, one after the other. Figures are drain times
// after the source commits, and the ratio native/cdcd (≥ 1: cdcd as fast or
// faster):
//
//	(a) one 1M-row insert transaction        CDCD_BENCH_ROWS (default 1000000)
//	(b) one 1M-row update transaction        (timed from the statement's start)
//	(c) a backlog of single-row transactions applied after replication was
//	    stopped                              CDCD_BENCH_BACKLOG (default 200000)
//
// go test -run '^$' -bench PGToPGVsNative -benchtime 1x -timeout 60m ./pkg/pipeline
func BenchmarkPGToPGVsNative(b *testing.B) {
	rows := envInt("CDCD_BENCH_ROWS", 1000000)
	backlog := envInt("CDCD_BENCH_BACKLOG", 200000)
	const ddl = `CREATE TABLE bench (id int PRIMARY KEY, a int, b text, c timestamptz, d numeric);
		CREATE TABLE single (id int PRIMARY KEY, v text);
		CREATE TABLE marker (id int PRIMARY KEY)`
	const fill = `CREATE PROCEDURE fill_single(n int) LANGUAGE plpgsql AS $$
		BEGIN FOR i IN 1..n LOOP INSERT INTO single VALUES (i, 'v' || i); COMMIT; END LOOP; END $$`
	conf := map[string]string{"max_wal_size": "4GB", "checkpoint_timeout": "30min"}

	// cdcd pair.
	cs := pgtest.StartT(b, pgtest.Options{Name: "cdcd-src", Conf: conf})
	ct := pgtest.StartT(b, pgtest.Options{Name: "cdcd-dst", Conf: conf})
	cs.ExecT(b, "postgres", ddl, fill)
	ct.ExecT(b, "postgres", ddl)
	// native pair.
	ns := pgtest.StartT(b, pgtest.Options{Name: "native-src", Conf: conf})
	nt := pgtest.StartT(b, pgtest.Options{Name: "native-dst", Conf: conf})
	ns.ExecT(b, "postgres", ddl, fill, `CREATE PUBLICATION native FOR ALL TABLES`)
	nt.ExecT(b, "postgres", ddl,
		fmt.Sprintf(`CREATE SUBSCRIPTION native CONNECTION 'host=127.0.0.1 port=%d dbname=postgres user=postgres' PUBLICATION native WITH (copy_data = false)`, ns.Port))

	trailDir := b.TempDir()
	yaml := yamlConfig(cs, nil, ct, trailDir)
	cdcd := startPipeline(b, yaml)
	waitSlot(b, cs)
	waitNative(b, ns)

	markerN := 0
	// drained waits until a marker row committed after the workload is on
	// the target: everything before it is applied.
	drained := func(src, dst *pgtest.Cluster) {
		markerN++
		src.ExecT(b, "postgres", fmt.Sprintf(`INSERT INTO marker VALUES (%d)`, markerN))
		deadline := time.Now().Add(30 * time.Minute)
		for {
			var n int
			require.NoError(b, queryRow(dst, fmt.Sprintf(`SELECT count(*) FROM marker WHERE id = %d`, markerN), &n))
			if n == 1 {
				return
			}
			require.True(b, time.Now().Before(deadline), "not drained")
			time.Sleep(10 * time.Millisecond)
		}
	}
	var peakRSS uint64
	stopRSS := sampleRSS(&peakRSS)
	defer stopRSS()

	type result struct{ name, cdcd, native, ratio string }
	var results []result
	report := func(name string, c, n time.Duration) {
		results = append(results, result{name, c.Round(time.Millisecond).String(), n.Round(time.Millisecond).String(), fmt.Sprintf("%.2f", n.Seconds()/c.Seconds())})
		b.ReportMetric(n.Seconds()/c.Seconds(), "ratio_"+name)
	}
	insert := fmt.Sprintf(`INSERT INTO bench SELECT g, g %% 1000, 'row ' || g, now(), g * 1.25 FROM generate_series(1, %d) g`, rows)

	// captured logs when cdcd's trail durably held everything committed so
	// far: the split between capture and apply time.
	captured := func(what string, t0 time.Time) {
		m := marker(b, cs)
		for cdcd.p.Capture().Stats().Durable <= m {
			time.Sleep(5 * time.Millisecond)
		}
		b.Logf("cdcd %s: trail durable after %v", what, time.Since(t0).Round(time.Millisecond))
	}
	// (a) insert: time from commit to drained.
	timeInsert := func(src, dst *pgtest.Cluster) time.Duration {
		src.ExecT(b, "postgres", insert)
		t0 := time.Now()
		if src == cs {
			go captured("insert", t0)
		}
		drained(src, dst)
		return time.Since(t0)
	}
	var na, ca time.Duration
	if os.Getenv("CDCD_BENCH_ONLY") == "backlog" {
		goto backlog
	}
	na = timeInsert(ns, nt)
	ca = timeInsert(cs, ct)
	report("insert_1M", ca, na)
	{

		// (b) update: time from the statement's start to drained.
		timeUpdate := func(src, dst *pgtest.Cluster) time.Duration {
			t0 := time.Now()
			src.ExecT(b, "postgres", `UPDATE bench SET a = a + 1, b = b || 'u'`)
			drained(src, dst)
			return time.Since(t0)
		}
		cb := timeUpdate(cs, ct)
		nb := timeUpdate(ns, nt)
		report("update_1M", cb, nb)
	}
backlog:

	// (c) backlog: replication stopped, many single-row commits, then
	// started: time from start to drained.
	cdcd.stop(b)
	cs.ExecT(b, "postgres", fmt.Sprintf(`CALL fill_single(%d)`, backlog))
	t0 := time.Now()
	cdcd = startPipeline(b, yaml)
	go captured("backlog", t0)
	drained(cs, ct)
	cc := time.Since(t0)
	nt.ExecT(b, "postgres", `ALTER SUBSCRIPTION native DISABLE`)
	ns.ExecT(b, "postgres", fmt.Sprintf(`CALL fill_single(%d)`, backlog))
	t0 = time.Now()
	nt.ExecT(b, "postgres", `ALTER SUBSCRIPTION native ENABLE`)
	drained(ns, nt)
	nc := time.Since(t0)
	report("backlog_single", cc, nc)
	cdcd.stop(b)

	requireSameTables(b, cs, ct, map[string]string{"bench": "id", "single": "id"})
	requireSameTables(b, ns, nt, map[string]string{"bench": "id", "single": "id"})
	stopRSS()
	b.Logf("PG → PG on %d cores (%d-row transactions, %d single-row backlog); peak heap+stack RSS of the test process %.0f MiB",
		runtime.NumCPU(), rows, backlog, float64(peakRSS)/(1<<20))
	b.Logf("%-16s %12s %12s %8s", "workload", "cdcd", "native", "ratio")
	for _, r := range results {
		b.Logf("%-16s %12s %12s %8s", r.name, r.cdcd, r.native, r.ratio)
	}
	b.Logf("backlog rate: cdcd %.0f tx/s, native %.0f tx/s", float64(backlog)/cc.Seconds(), float64(backlog)/nc.Seconds())
}

func waitNative(b *testing.B, src *pgtest.Cluster) {
	deadline := time.Now().Add(time.Minute)
	for {
		var active bool
		err := queryRow(src, `SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = 'native'`, &active)
		if err == nil && active {
			return
		}
		require.True(b, time.Now().Before(deadline), "native subscription not streaming: %v", err)
		time.Sleep(50 * time.Millisecond)
	}
}

// sampleRSS records the peak resident set size of this process.
func sampleRSS(peak *uint64) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if b, err := os.ReadFile("/proc/self/statm"); err == nil {
				var size, res uint64
				fmt.Sscan(string(b), &size, &res)
				if r := res * uint64(os.Getpagesize()); r > *peak {
					*peak = r
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return func() { cancel(); <-done }
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
