package snapshot_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/kafkatest"
	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// TestSnapshotToKafka: a sink without bulk loading gets the snapshot rows
// through its normal envelope, as Debezium read events (op "r") on the
// mapped topic, then the stream's events.
func TestSnapshotToKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("real servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	kc := kafkatest.Start(t, kafkatest.Options{})
	src.ExecT(t, "postgres",
		`CREATE TABLE items (id int PRIMARY KEY, name text, secret text)`,
		`INSERT INTO items SELECT g, 'item ' || g, 's' FROM generate_series(1, 3000) g`,
	)
	yaml := fmt.Sprintf(`
source: { dsn: %q, create: true, heartbeat: 1s, status_interval: 200ms }
trail: { dir: %q }
sinks:
  - name: k
    kind: kafka
    brokers: [%q]
    topic: "cdc.{schema}.{table}"
http: { listen: "off" }
snapshot: { mode: initial, parallelism: 2, chunk_rows: 1000 }
mappings:
  - from: public.items
    to: shop.goods
    columns: { exclude: [secret] }
`, src.DSN("postgres"), t.TempDir(), kc.Addrs()[0])
	r := startPipeline(t, yaml)
	src.WaitSlotActiveT(t, "cdcd")
	require.Eventually(t, func() bool { return r.P.Snapshots()[0].Progress().Complete },
		time.Minute, 50*time.Millisecond, "snapshot not complete")
	src.ExecT(t, "postgres", `INSERT INTO items VALUES (5000, 'new', 's')`, `UPDATE items SET name = 'changed' WHERE id = 1`)
	r.WaitApplied(t, src.MarkerT(t), time.Minute)
	r.Stop(t)
	recs, err := kc.ReadCommitted(t.Context(), "cdc.shop.goods")
	require.NoError(t, err)
	ops := map[string]int{}
	ids := map[float64]bool{}
	for _, rec := range recs {
		var ev struct {
			Op    string         `json:"op"`
			After map[string]any `json:"after"`
		}
		require.NoError(t, json.Unmarshal(rec.Value, &ev))
		ops[ev.Op]++
		if ev.Op == "r" {
			ids[ev.After["id"].(float64)] = true
			require.NotContains(t, ev.After, "secret")
			require.True(t, strings.HasPrefix(ev.After["name"].(string), "item "))
		}
	}
	require.Equal(t, map[string]int{"r": 3000, "c": 1, "u": 1}, ops)
	require.Len(t, ids, 3000)
}
