package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcd-io/cdcd/internal/kafkatest"
	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink/kafka"
)

// TestMinBatchDelayGroupsTransactions: with min_batch_delay (here an hour,
// with batch.max_delay as long), source transactions committed one by one
// — apply catching up after each — still go out in one Kafka transaction,
// closed by batch.max_rows: one checkpoint for three inserts and the three
// marker messages (apply counts a logical message as a row) that follow them.
func TestMinBatchDelayGroupsTransactions(t *testing.T) {
	pg := pgtest.StartT(t, pgtest.Options{})
	k := kafkatest.Start(t, kafkatest.Options{Brokers: 1})
	pg.ExecT(t, "postgres", `CREATE TABLE t (id int PRIMARY KEY)`)
	r := startPipeline(t, fmt.Sprintf(`
source:
  dsn: %q
  create: true
  heartbeat: 1s
  status_interval: 200ms
trail:
  dir: %q
sinks:
  - name: events
    kind: kafka
    brokers: [%s]
    batch: { max_rows: 6, max_delay: 1h }
    kafka: { min_batch_delay: 1h }
log:
  format: text
`, pg.DSN("postgres"), t.TempDir(), strings.Join(k.Addrs(), ", ")))
	waitSlot(t, pg)
	for i := 1; i <= 3; i++ {
		pg.ExecT(t, "postgres", fmt.Sprintf(`INSERT INTO t VALUES (%d)`, i))
		m := marker(t, pg)
		// Let capture make it durable, so apply catches up with it:
		// without the delay it would commit it alone.
		require.Eventually(t, func() bool { return r.P.Capture().Stats().Durable > m }, time.Minute, 5*time.Millisecond)
	}
	var ckpts []*kgo.Record
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		recs, err := k.ReadCommitted(ctx, "cdcd.checkpoints")
		ckpts = recs
		return err == nil && len(recs) > 0
	}, time.Minute, 50*time.Millisecond, "no checkpoint committed")
	require.Len(t, ckpts, 1, "one Kafka transaction for the three source transactions")
	var cp struct {
		EndLSN string `json:"end_lsn"`
	}
	require.NoError(t, json.Unmarshal(ckpts[0].Value, &cp))
	end, err := change.ParseLSN(cp.EndLSN)
	require.NoError(t, err)
	require.Greater(t, end, change.LSN(0))
	require.Len(t, readTopic(t, k, "cdc.public.t"), 3)
	r.Stop(t)
}

// TestMinBatchDelayDefault: the sink paces batches by default, and off
// (negative) turns pacing off.
func TestMinBatchDelayDefault(t *testing.T) {
	k := kafkatest.Start(t, kafkatest.Options{Brokers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := kafka.New(ctx, kafka.Config{Name: "d", Brokers: k.Addrs()}, testLogger())
	require.NoError(t, err)
	require.Equal(t, kafka.DefaultMinBatchDelay, s.MinBatchDelay())
	require.NoError(t, s.Close(ctx))
	s, err = kafka.New(ctx, kafka.Config{Name: "d", Brokers: k.Addrs(), MinBatchDelay: -1}, testLogger())
	require.NoError(t, err)
	require.Negative(t, s.MinBatchDelay())
	require.NoError(t, s.Close(ctx))
}
