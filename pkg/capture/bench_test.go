package capture_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
)

// BenchmarkCaptureVsRecvlogical measures capture end to end (pgoutput
// stream → decode → trail with group-commit fsync → ack) against
// pg_recvlogical streaming the same workload from an identical slot to
// /dev/null — the speed limit of the server's decoding. Runs alternate and
// repeat; the figures are medians and the ratio is recvlogical time / cdcd
// time (≥ 1 means cdcd keeps up with the server).
//
//	CDCD_BENCH_ROWS (default 500000), CDCD_BENCH_TXROWS (default 100),
//	CDCD_BENCH_REPS (default 3)
//
// make bench runs it; go test -run '^$' -bench CaptureVsRecvlogical -benchtime 1x ./pkg/capture
func BenchmarkCaptureVsRecvlogical(b *testing.B) {
	rows := envInt("CDCD_BENCH_ROWS", 500000)
	txRows := envInt("CDCD_BENCH_TXROWS", 100)
	reps := envInt("CDCD_BENCH_REPS", 3)

	pg := pgtest.StartT(b, pgtest.Options{Conf: map[string]string{"max_replication_slots": "40", "max_wal_senders": "40"}})
	pg.ExecT(b, "postgres",
		`CREATE TABLE bench (id int PRIMARY KEY, a int, b text, c timestamptz, d numeric)`,
		`CREATE PUBLICATION cdcd FOR ALL TABLES`,
		`CREATE PROCEDURE fill(n int, per int) LANGUAGE plpgsql AS $$
		 DECLARE i int := 0;
		 BEGIN
		   WHILE i < n LOOP
		     INSERT INTO bench SELECT g, g % 1000, 'row ' || g, now(), g * 1.25 FROM generate_series(i + 1, least(i + per, n)) g;
		     COMMIT;
		     i := i + per;
		   END LOOP;
		 END $$`)
	for i := range reps {
		pg.ExecT(b, "postgres",
			fmt.Sprintf(`SELECT pg_create_logical_replication_slot('cap_%d', 'pgoutput')`, i),
			fmt.Sprintf(`SELECT pg_create_logical_replication_slot('rcv_%d', 'pgoutput')`, i))
	}
	pg.ExecT(b, "postgres", fmt.Sprintf(`CALL fill(%d, %d)`, rows, txRows))
	m := marker(b, pg)
	var endpos string
	require.NoError(b, query(pg, "SELECT pg_current_wal_lsn()::text", &endpos))
	bin, err := pgtest.BinDir(pgtest.V15)
	require.NoError(b, err)

	b.ResetTimer()
	for range b.N {
		var capT, rcvT []time.Duration
		for i := range reps {
			run := func(first bool) {
				if first == (i%2 == 0) {
					capT = append(capT, timeCapture(b, pg, fmt.Sprintf("cap_%d", i), m))
				} else {
					rcvT = append(rcvT, timeRecvlogical(b, bin, pg, fmt.Sprintf("rcv_%d", i), endpos))
				}
			}
			run(true)
			run(false)
		}
		c, r := median(capT), median(rcvT)
		b.ReportMetric(float64(rows)/c.Seconds(), "cdcd_events/s")
		b.ReportMetric(float64(rows)/r.Seconds(), "recvlogical_events/s")
		b.ReportMetric(r.Seconds()/c.Seconds(), "ratio")
		b.Logf("capture %d rows in %d-row transactions: cdcd %v (%.0f ev/s), pg_recvlogical %v (%.0f ev/s), ratio %.3f; runs cdcd %v recvlogical %v",
			rows, txRows, c, float64(rows)/c.Seconds(), r, float64(rows)/r.Seconds(), r.Seconds()/c.Seconds(), capT, rcvT)
	}
}

func timeCapture(b *testing.B, pg *pgtest.Cluster, slot string, past change.LSN) time.Duration {
	cfg := testConfig(pg, b.TempDir())
	cfg.Source.Slot = slot
	cfg.Source.Create = false
	cfg.Source.Heartbeat = -1
	start := time.Now()
	r := startCapture(b, cfg)
	r.waitPast(b, past, 10*time.Minute)
	d := time.Since(start)
	r.stop(b)
	return d
}

func timeRecvlogical(b *testing.B, bin string, pg *pgtest.Cluster, slot, endpos string) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pg_recvlogical"),
		"-d", pg.DSN("postgres"), "--slot", slot, "--start", "--no-loop",
		"-o", "proto_version=1", "-o", "publication_names=cdcd", "-o", "messages=true",
		"--endpos", endpos, "-f", os.DevNull)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	require.NoError(b, err, "%s", out)
	return time.Since(start)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
