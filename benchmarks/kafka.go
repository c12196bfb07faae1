package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
)

// benchKafka: PG → Kafka (cdcd run with an exactly-once Kafka sink, Debezium
// envelope, zstd) vs capture only (cdcd capture --until), each reading its
// own fresh slot over the same workload. The Kafka run is done when the
// sink's checkpoint record, committed in the same Kafka transaction as the
// data, reaches the end of the workload. The broker is kfake (the real
// Kafka protocol over TCP) in this process. Each rep logs the CPU time of
// cdcd, of this process (kfake, mostly) and of the slot's walsender for both
// sides, and the number of Kafka transactions: on a 2-core machine the
// PG→Kafka run is CPU-bound where capture alone waits for its walsender, so
// those explain the ratio better than the wall times of a shared machine.
// With -cpuprofile this process is profiled too (harness-<slot>.pprof).
func benchKafka(ctx context.Context, e *Env, res *Results) error {
	var srv servers
	defer srv.stop()
	conf := map[string]string{"max_replication_slots": "40", "max_wal_senders": "40"}
	for k, v := range benchConf {
		conf[k] = v
	}
	pg, err := srv.start(ctx, "kafka", conf)
	if err != nil {
		return err
	}
	if err := execSQL(ctx, pg, captureDDL...); err != nil {
		return err
	}
	reps := e.Size.Reps
	for i := range reps {
		if err := execSQL(ctx, pg,
			fmt.Sprintf(`SELECT pg_create_logical_replication_slot('kaf_%d', 'pgoutput')`, i),
			fmt.Sprintf(`SELECT pg_create_logical_replication_slot('cap_%d', 'pgoutput')`, i)); err != nil {
			return err
		}
	}
	rows := e.Size.KafkaRows
	log.Printf("kafka: %s rows in %d-row transactions", human(rows), e.Size.CaptureTx)
	if err := execSQL(ctx, pg, fmt.Sprintf(`CALL fill(%d, %d)`, rows, e.Size.CaptureTx)); err != nil {
		return err
	}
	end, err := markerLSN(pg)
	if err != nil {
		return err
	}
	var kafkaRuns, capRuns []float64
	var kafkaCPU, capCPU []cpuUse
	for i := range reps {
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		for _, kafkaTurn := range order {
			slot := fmt.Sprintf("cap_%d", i)
			if kafkaTurn {
				slot = fmt.Sprintf("kaf_%d", i)
			}
			var prof string
			if e.Profile != "" {
				prof = filepath.Join(e.Profile, "harness-"+slot+".pprof")
			}
			m, err := meterCPU(pg, slot, prof)
			if err != nil {
				return err
			}
			var d time.Duration
			if kafkaTurn {
				d, err = timeKafka(ctx, e, pg, slot, end)
			} else {
				d, err = timeCdcdCapture(ctx, e, pg, slot, end.String())
			}
			u := m.stop()
			if err != nil {
				return err
			}
			if kafkaTurn {
				kafkaRuns, kafkaCPU = append(kafkaRuns, secs(d)), append(kafkaCPU, u)
			} else {
				capRuns, capCPU = append(capRuns, secs(d)), append(capCPU, u)
			}
		}
		log.Printf("kafka rep %d: PG→Kafka %.2fs (%s); capture only %.2fs (%s)",
			i+1, kafkaRuns[i], kafkaCPU[i], capRuns[i], capCPU[i])
	}
	res.addRatio("kafka.rows", fmt.Sprintf("PG→Kafka %s rows, exactly-once (%d-row tx)", human(rows), e.Size.CaptureTx),
		"rows/s", float64(rows), "cdcd capture only", 0.8, kafkaRuns, capRuns)
	return nil
}

func timeKafka(ctx context.Context, e *Env, pg *pgtest.Cluster, slot string, end change.LSN) (time.Duration, error) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(4))
	if err != nil {
		return 0, err
	}
	defer kc.Close()
	brokers := kc.ListenAddrs()
	dir := filepath.Join(e.Work, slot)
	y := fmt.Sprintf(`source:
  dsn: %q
  slot: %s
  publication: cdcd
  heartbeat: "off"
trail:
  dir: %q
sinks:
  - name: events
    kind: kafka
    brokers: [%q]
    delivery: exactly-once
    compression: zstd
    kafka: { checkpoint_topic: bench.checkpoints }
log:
  format: json
`, pg.DSN("postgres"), slot, dir, brokers[0])
	path := dir + ".yaml"
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		return 0, err
	}
	t0 := time.Now()
	p, err := startCdcd(e, slot, "run", "--config", path)
	if err != nil {
		return 0, err
	}
	defer p.Stop()
	txns, err := waitCheckpoint(ctx, brokers, "bench.checkpoints", end, p)
	if err != nil {
		return 0, err
	}
	d := time.Since(t0)
	log.Printf("kafka %s: %d Kafka transactions, %d rows each on average", slot, txns, e.Size.KafkaRows/max(txns, 1))
	if err := p.Stop(); err != nil {
		return 0, err
	}
	return d, os.RemoveAll(dir)
}

// waitCheckpoint follows the checkpoint topic (read_committed) until a
// checkpoint at or past end is committed, and returns how many checkpoints
// it read: one per Kafka transaction.
func waitCheckpoint(ctx context.Context, brokers []string, topic string, end change.LSN, p *Proc) (int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.AllowAutoTopicCreation())
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	n := 0
	deadline := time.Now().Add(30 * time.Minute)
	for time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		var reached bool
		fs.EachRecord(func(r *kgo.Record) {
			n++
			var v struct {
				EndLSN string `json:"end_lsn"`
			}
			if json.Unmarshal(r.Value, &v) == nil {
				if l, err := change.ParseLSN(v.EndLSN); err == nil && l >= end {
					reached = true
				}
			}
		})
		if reached {
			return n, nil
		}
		if err := p.alive(); err != nil {
			return n, err
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
	}
	return n, fmt.Errorf("kafka sink did not reach %s within 30 minutes", end)
}
