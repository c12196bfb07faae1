package kafka_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/kafkatest"
	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/apply"
	"github.com/cdcd-io/cdcd/pkg/capture"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/pipeline"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/sink/kafka"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// BenchmarkKafkaEndToEnd measures PostgreSQL → cdcd → Kafka (kfake, in this
// process) against capture alone (PostgreSQL → trail) on the same workload,
// alternating runs from identical slots; figures are medians, ratio is
// end-to-end events/s over capture-only events/s (goal ≥ 0.8).
//
//	CDCD_BENCH_ROWS (default 200000), CDCD_BENCH_TXROWS (default 100),
//	CDCD_BENCH_REPS (default 3), CDCD_BENCH_COMPRESSION (default snappy)
//
// go test -run '^$' -bench KafkaEndToEnd -benchtime 1x ./pkg/sink/kafka
func BenchmarkKafkaEndToEnd(b *testing.B) {
	rows := envInt("CDCD_BENCH_ROWS", 200000)
	txRows := envInt("CDCD_BENCH_TXROWS", 100)
	reps := envInt("CDCD_BENCH_REPS", 3)
	comp := os.Getenv("CDCD_BENCH_COMPRESSION")
	pg := pgtest.StartT(b, pgtest.Options{Conf: map[string]string{"max_replication_slots": "40", "max_wal_senders": "40"}})
	k := kafkatest.Start(b, kafkatest.Options{})
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
			fmt.Sprintf(`SELECT pg_create_logical_replication_slot('kaf_%d', 'pgoutput')`, i))
	}
	pg.ExecT(b, "postgres", fmt.Sprintf(`CALL fill(%d, %d)`, rows, txRows))
	m := marker(b, pg)

	b.ResetTimer()
	for range b.N {
		var capT, e2eT []time.Duration
		for i := range reps {
			c := func() { capT = append(capT, timeCaptureOnly(b, pg, fmt.Sprintf("cap_%d", i), m)) }
			e := func() {
				e2eT = append(e2eT, timeEndToEnd(b, pg, k, fmt.Sprintf("kaf_%d", i), comp, m))
			}
			if i%2 == 0 {
				c()
				e()
			} else {
				e()
				c()
			}
		}
		ct, et := median(capT), median(e2eT)
		b.ReportMetric(float64(rows)/ct.Seconds(), "capture_events/s")
		b.ReportMetric(float64(rows)/et.Seconds(), "kafka_e2e_events/s")
		b.ReportMetric(ct.Seconds()/et.Seconds(), "ratio")
		b.Logf("%d rows in %d-row transactions: capture only %v (%.0f ev/s), PG→Kafka %v (%.0f ev/s), ratio %.3f; runs capture %v e2e %v",
			rows, txRows, ct, float64(rows)/ct.Seconds(), et, float64(rows)/et.Seconds(), ct.Seconds()/et.Seconds(), capT, e2eT)
	}
}

func captureConfig(pg *pgtest.Cluster, slot, dir string) capture.Config {
	return capture.Config{
		Source:   postgres.Config{DSN: pg.DSN("postgres"), Slot: slot, Heartbeat: -1, StatusInterval: 200 * time.Millisecond},
		TrailDir: dir,
		Logger:   testLogger(),
	}
}

func timeCaptureOnly(b *testing.B, pg *pgtest.Cluster, slot string, past change.LSN) time.Duration {
	c, err := capture.New(captureConfig(pg, slot, b.TempDir()))
	require.NoError(b, err)
	durable := make(chan change.LSN, 1024)
	c.OnDurable = func(l change.LSN) {
		select {
		case durable <- l:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- c.Run(ctx) }()
	for l := range durable {
		if l > past {
			break
		}
	}
	d := time.Since(start)
	cancel()
	require.NoError(b, <-done)
	return d
}

func timeEndToEnd(b *testing.B, pg *pgtest.Cluster, k *kafkatest.Cluster, slot, comp string, past change.LSN) time.Duration {
	kc := kafka.Config{Name: slot, Brokers: k.Addrs(), Topic: slot + ".{table}", Compression: comp}
	p, err := pipeline.New(pipeline.Config{
		Capture: captureConfig(pg, slot, b.TempDir()),
		Sinks: []pipeline.Sink{{
			Apply: apply.Config{Name: slot},
			Open:  func(ctx context.Context) (sink.Sink, error) { return kafka.New(ctx, kc, testLogger()) },
		}},
		Logger: testLogger(),
	})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- p.Run(ctx) }()
	for p.Workers()[0].Stats().Position.EndLSN <= past {
		select {
		case err := <-done:
			b.Fatalf("pipeline stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	d := time.Since(start)
	cancel()
	require.NoError(b, <-done)
	return d
}

// BenchmarkKafkaSink measures the sink alone: an apply worker producing a
// prepared trail (no PostgreSQL) to kfake with each compression setting,
// exactly-once. MB/s counts record keys and values. cpu_us/event and
// allocs/event are the whole process's (worker, sink, kgo and kfake): on a
// shared machine they move less than the rates do.
//
//	CDCD_BENCH_ROWS (default 200000), CDCD_BENCH_TXROWS (default 100),
//	CDCD_BENCH_MAXROWS (rows per batch = Kafka transaction; default 10000;
//	200 is about what a live pipeline that keeps up with capture sends)
//
// go test -run '^$' -bench KafkaSink -benchtime 1x ./pkg/sink/kafka
func BenchmarkKafkaSink(b *testing.B) {
	rows := envInt("CDCD_BENCH_ROWS", 200000)
	txRows := envInt("CDCD_BENCH_TXROWS", 100)
	maxRows := envInt("CDCD_BENCH_MAXROWS", 10000)
	dir := b.TempDir()
	last := prepareTrail(b, dir, rows, txRows)
	k := kafkatest.Start(b, kafkatest.Options{})
	b.ResetTimer()
	var kcomp string
	for n := range b.N {
		// The first run warms the cluster and the heap up; it is not reported.
		for i, comp := range []string{"warmup", "none", "snappy", "lz4", "zstd", "gzip"} {
			name := fmt.Sprintf("sink%d_%d_%s", n, i, comp)
			if comp == "warmup" {
				kcomp = "none"
			} else {
				kcomp = comp
			}
			var s *kafka.Sink
			kc := kafka.Config{Name: name, Brokers: k.Addrs(), Topic: name + ".{table}", Compression: kcomp}
			w, err := apply.New(apply.Config{Name: name, TrailDir: dir, MaxRows: maxRows, Logger: testLogger()}, func(ctx context.Context) (sink.Sink, error) {
				var err error
				s, err = kafka.New(ctx, kc, testLogger())
				return s, err
			})
			require.NoError(b, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			cpu0 := processCPU()
			start := time.Now()
			go func() { done <- w.Run(ctx) }()
			for w.Applied() < last {
				select {
				case err := <-done:
					b.Fatalf("worker stopped: %v", err)
				case <-time.After(2 * time.Millisecond):
				}
			}
			d := time.Since(start)
			cpu := processCPU() - cpu0
			runtime.ReadMemStats(&m1)
			st := s.Stats()
			cancel()
			require.NoError(b, <-done)
			if comp == "warmup" {
				continue
			}
			evs := float64(rows) / d.Seconds()
			mbs := float64(st.Bytes) / d.Seconds() / 1e6
			b.ReportMetric(evs, comp+"_events/s")
			b.ReportMetric(mbs, comp+"_MB/s")
			cpuEv := float64(cpu.Microseconds()) / float64(rows)
			allocsEv := float64(m1.Mallocs-m0.Mallocs) / float64(rows)
			b.ReportMetric(cpuEv, comp+"_cpu_us/event")
			b.ReportMetric(allocsEv, comp+"_allocs/event")
			b.Logf("sink alone, compression %-6s: %d events in %v: %.0f events/s, %.1f MB/s, %.2f µs CPU and %.1f allocs (%.0f B) per event (%d records, %d bytes, %d transactions)",
				comp, rows, d.Round(time.Millisecond), evs, mbs, cpuEv, allocsEv, float64(m1.TotalAlloc-m0.TotalAlloc)/float64(rows),
				st.Records, st.Bytes, st.Transactions)
		}
	}
}

// prepareTrail writes rows inserts of the bench table shape in txRows-row
// transactions and returns the last record's sequence number.
func prepareTrail(b *testing.B, dir string, rows, txRows int) uint64 {
	w, err := trail.Open(dir, trail.Options{SystemID: 1})
	require.NoError(b, err)
	rel := &change.Relation{OID: 16384, Schema: "public", Name: "bench", ReplicaIdentity: 'd', PrimaryKey: []int{0},
		Columns: []change.Column{
			{Name: "id", TypeOID: 23, Key: true, TypeMod: -1}, {Name: "a", TypeOID: 23, TypeMod: -1},
			{Name: "b", TypeOID: 25, TypeMod: -1}, {Name: "c", TypeOID: 1184, TypeMod: -1}, {Name: "d", TypeOID: 1700, TypeMod: -1},
		}}
	require.NoError(b, w.Schema(rel))
	lsn := change.LSN(0x1000000)
	ts := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	for i := 0; i < rows; {
		tx := &change.Tx{XID: uint32(1000 + i), FinalLSN: lsn + 1000, CommitLSN: lsn + 1000, EndLSN: lsn + 1001, CommitTime: ts}
		require.NoError(b, w.Begin(tx))
		for j := 0; j < txRows && i < rows; j++ {
			i++
			lsn += 100
			require.NoError(b, w.Change(&change.Change{Op: change.OpInsert, LSN: lsn, Relation: rel, New: change.Row{
				change.Text(strconv.Itoa(i)), change.Text(strconv.Itoa(i % 1000)), change.Text("row " + strconv.Itoa(i)),
				change.Text("2025-05-01 10:00:00.123456+00"), change.Text(strconv.FormatFloat(float64(i)*1.25, 'f', 2, 64)),
			}}))
		}
		lsn += 2000
		tx.CommitLSN, tx.EndLSN = lsn, lsn+8
		require.NoError(b, w.Commit(tx))
	}
	_, err = w.Sync()
	require.NoError(b, err)
	last := w.NextSeq() - 1
	require.NoError(b, w.Close())
	return last
}

// processCPU is the user + system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
