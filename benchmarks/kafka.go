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
// Kafka protocol over TCP) in this process.
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
	for i := range reps {
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		for _, kafkaTurn := range order {
			if kafkaTurn {
				d, err := timeKafka(ctx, e, pg, fmt.Sprintf("kaf_%d", i), end)
				if err != nil {
					return err
				}
				kafkaRuns = append(kafkaRuns, secs(d))
			} else {
				d, err := timeCdcdCapture(ctx, e, pg, fmt.Sprintf("cap_%d", i), end.String())
				if err != nil {
					return err
				}
				capRuns = append(capRuns, secs(d))
			}
		}
		log.Printf("kafka rep %d: PG→Kafka %.2fs, capture only %.2fs", i+1, kafkaRuns[i], capRuns[i])
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
	if err := waitCheckpoint(ctx, brokers, "bench.checkpoints", end, p); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	if err := p.Stop(); err != nil {
		return 0, err
	}
	return d, os.RemoveAll(dir)
}

// waitCheckpoint follows the checkpoint topic (read_committed) until a
// checkpoint at or past end is committed.
func waitCheckpoint(ctx context.Context, brokers []string, topic string, end change.LSN, p *Proc) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.AllowAutoTopicCreation())
	if err != nil {
		return err
	}
	defer cl.Close()
	deadline := time.Now().Add(30 * time.Minute)
	for time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		var reached bool
		fs.EachRecord(func(r *kgo.Record) {
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
			return nil
		}
		if err := p.alive(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return fmt.Errorf("kafka sink did not reach %s within 30 minutes", end)
}
