package snapshot_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cdcd-io/cdcd/internal/pipetest"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

func testLogger() *slog.Logger {
	if os.Getenv("CDCD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// yamlConfig is a config from source to one postgres sink named target,
// with extra YAML appended (snapshot, schema, tables, mappings sections).
func yamlConfig(source, target *pgtest.Cluster, trailDir, extra string) string {
	return fmt.Sprintf(`
source:
  dsn: %q
  create: true
  heartbeat: 1s
  status_interval: 200ms
trail:
  dir: %q
  segment_bytes: 4MiB
  purge_interval: 1s
sinks:
  - name: target
    kind: postgres
    dsn: %q
    batch: { max_rows: 5000, max_delay: 50ms }
http:
  listen: "off"
log:
  format: text
`, source.DSN("postgres"), trailDir, target.DSN("postgres")) + extra
}

type running = pipetest.Running

func startPipeline(t testing.TB, yaml string) *running {
	t.Helper()
	return pipetest.Start(t, yaml, testLogger())
}

// digest is a query's row count and an ordered hash of its rows.
func digest(t testing.TB, c *pgtest.Cluster, query, orderBy string) string {
	t.Helper()
	var n int64
	var h *string
	require.NoError(t, c.QueryRow(fmt.Sprintf(`SELECT count(*), md5(string_agg(x::text, '|' ORDER BY %s)) FROM (%s) x`, orderBy, query), &n, &h))
	hs := "<empty>"
	if h != nil {
		hs = *h
	}
	return fmt.Sprintf("%d rows, md5 %s", n, hs)
}

func requireSame(t testing.TB, src, dst *pgtest.Cluster, table, orderBy string) {
	t.Helper()
	q := "SELECT * FROM " + table
	require.Equal(t, digest(t, src, q, orderBy), digest(t, dst, q, orderBy), "table %s", table)
}

// writer runs random single-row inserts, updates and deletes on table
// (id bigint key, v int, pad text) with ids in [1, maxID] until stopped.
type writer struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	n      atomic.Int64 // writes done
	err    error
}

// writes is how many writes were done so far.
func (w *writer) writes() int64 { return w.n.Load() }

func startWriter(t testing.TB, c *pgtest.Cluster, table string, maxID int64) *writer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{cancel: cancel}
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	require.NoError(t, err)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer conn.Close(context.Background())
		for ctx.Err() == nil {
			id := rand.Int64N(maxID) + 1
			var err error
			switch rand.IntN(4) {
			case 0:
				_, err = conn.Exec(ctx, "INSERT INTO "+table+" (id, v, pad) VALUES ($1, $2, 'w') ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v", id+maxID, rand.IntN(1000))
			case 1:
				_, err = conn.Exec(ctx, "UPDATE "+table+" SET v = v + 1, pad = 'u' WHERE id = $1", id)
			case 2:
				_, err = conn.Exec(ctx, "DELETE FROM "+table+" WHERE id = $1", id)
			case 3:
				_, err = conn.Exec(ctx, "BEGIN; UPDATE "+table+" SET v = -v WHERE id = "+fmt.Sprint(id)+"; INSERT INTO "+table+" (id, v, pad) VALUES ("+fmt.Sprint(id+2*maxID)+", 1, 'x') ON CONFLICT DO NOTHING; COMMIT")
			}
			if err != nil && ctx.Err() == nil {
				w.err = err
				return
			}
			w.n.Add(1)
		}
	}()
	return w
}

func (w *writer) stop(t testing.TB) int64 {
	t.Helper()
	w.cancel()
	w.wg.Wait()
	require.NoError(t, w.err)
	return w.n.Load()
}
