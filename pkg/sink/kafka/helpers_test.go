package kafka_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cdcd-io/cdcd/internal/pipetest"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcd-io/cdcd/internal/kafkatest"
	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
)

func testLogger() *slog.Logger {
	if os.Getenv("CDCD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// yamlConfig is a cdcd config from pg to one kafka sink; extra is YAML
// added to the sink entry.
func yamlConfig(pg *pgtest.Cluster, k *kafkatest.Cluster, trailDir, extra string) string {
	return fmt.Sprintf(`
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
  - name: events
    kind: kafka
    brokers: [%s]
    batch: { max_rows: 2000, max_delay: 50ms }
%s
log:
  format: text
`, pg.DSN("postgres"), trailDir, strings.Join(k.Addrs(), ", "), indent(extra, "    "))
}

func indent(s, by string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			b.WriteString(by + strings.TrimSpace(l) + "\n")
		}
	}
	return b.String()
}

type running = pipetest.Running

func startPipeline(t testing.TB, yaml string) *running {
	t.Helper()
	return pipetest.Start(t, yaml, testLogger())
}

func waitSlot(t testing.TB, c *pgtest.Cluster) { t.Helper(); c.WaitSlotActiveT(t, "cdcd") }

func queryRow(c *pgtest.Cluster, sql string, dst ...any) error { return c.QueryRow(sql, dst...) }

func marker(t testing.TB, c *pgtest.Cluster) change.LSN { t.Helper(); return c.MarkerT(t) }

// event is a decoded Debezium envelope.
type event struct {
	Before    map[string]any `json:"before"`
	After     map[string]any `json:"after"`
	Source    map[string]any `json:"source"`
	Op        string         `json:"op"`
	TsMs      json.Number    `json:"ts_ms"`
	Unchanged []string       `json:"unchanged"`

	key       string
	partition int32
	headers   map[string]string
}

func decodeEvent(t testing.TB, r *kgo.Record) event {
	t.Helper()
	var e event
	if r.Value != nil {
		d := json.NewDecoder(bytes.NewReader(r.Value))
		d.UseNumber()
		d.DisallowUnknownFields()
		require.NoError(t, d.Decode(&e), "value %s", r.Value)
	}
	e.key, e.partition = string(r.Key), r.Partition
	e.headers = map[string]string{}
	for _, h := range r.Headers {
		e.headers[h.Key] = string(h.Value)
	}
	return e
}

// readTopic reads a topic with read_committed.
func readTopic(t testing.TB, k *kafkatest.Cluster, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	recs, err := k.ReadCommitted(ctx, topic)
	require.NoError(t, err)
	return recs
}

// byKey groups events by record key, each key's events in offset order
// (one key lives in one partition).
func byKey(t testing.TB, recs []*kgo.Record) map[string][]event {
	out := map[string][]event{}
	for _, r := range recs {
		out[string(r.Key)] = append(out[string(r.Key)], decodeEvent(t, r))
	}
	return out
}

// buildCdcd builds the cdcd binary once per test binary.
func buildCdcd(t testing.TB) string { t.Helper(); return pgtest.BuildCdcdT(t) }
