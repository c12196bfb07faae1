package pipeline_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/kafkatest"
	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// TestSchemaChangesWhilePgbench: while pgbench runs, a column is added with
// a default and then used, a column is dropped, and a new table is created
// and written. With schema.create on and no snapshot, the PostgreSQL target
// follows without a restart (the added column with its default for the rows
// the source filled without streaming them; the dropped one left in place)
// and the Kafka topic carries the new field.
func TestSchemaChangesWhilePgbench(t *testing.T) {
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	kc := kafkatest.Start(t, kafkatest.Options{})
	pgbench(t, src, "-i", "-s", "1", "-q")
	pgbench(t, dst, "-i", "-s", "1", "-q")
	yaml := yamlConfig(src, nil, dst, t.TempDir()) + fmt.Sprintf(`
  - name: k
    kind: kafka
    brokers: [%q]
schema: { create: true }
http: { listen: "off" }
`, kc.Addrs()[0])
	yaml = strings.Replace(yaml, "log:\n  format: text\n", "", 1) + "log:\n  format: text\n"
	r := startPipeline(t, yaml)
	waitSlot(t, src)

	bin, err := pgtest.BinDir(pgtest.V15)
	require.NoError(t, err)
	bench := exec.Command(filepath.Join(bin, "pgbench"), "-c", "2", "-j", "2", "-T", "10", "-n", src.DSN("postgres"))
	out := &strings.Builder{}
	bench.Stdout, bench.Stderr = out, out
	require.NoError(t, bench.Start())

	src.ExecT(t, "postgres",
		`ALTER TABLE pgbench_accounts ADD COLUMN note text DEFAULT 'filled by the default'`,
		`UPDATE pgbench_accounts SET note = 'set ' || aid WHERE aid % 100 = 0`,
		`ALTER TABLE pgbench_tellers ADD COLUMN score numeric(10,2) NOT NULL DEFAULT 1.50`,
		`UPDATE pgbench_tellers SET score = tid * 2.25`,
		`ALTER TABLE pgbench_history DROP COLUMN filler`,
		`CREATE TABLE events (id bigint PRIMARY KEY, kind text NOT NULL DEFAULT 'e', at timestamptz)`,
		`INSERT INTO events SELECT g, 'k' || g % 3, '2026-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 500) g`,
		`UPDATE events SET kind = 'updated' WHERE id < 10`,
	)
	require.NoError(t, bench.Wait(), "pgbench: %s", out)
	r.WaitApplied(t, marker(t, src), 2*time.Minute)
	r.Stop(t)

	requireSameTables(t, src, dst, map[string]string{"pgbench_accounts": "aid", "pgbench_tellers": "tid", "pgbench_branches": "bid", "events": "id"})
	history := func(c *pgtest.Cluster) string {
		var n int64
		var h string
		require.NoError(t, queryRow(c, `SELECT count(*), coalesce(md5(string_agg(concat_ws(',', tid, bid, aid, delta, mtime), '|' ORDER BY tid, bid, aid, delta, mtime)), '')
			FROM pgbench_history`, &n, &h))
		return fmt.Sprintf("%d rows, md5 %s", n, h)
	}
	require.Equal(t, history(src), history(dst), "pgbench_history without the dropped column")
	var filler bool
	require.NoError(t, queryRow(dst, `SELECT count(*) > 0 FROM information_schema.columns WHERE table_name = 'pgbench_history' AND column_name = 'filler'`, &filler))
	require.True(t, filler, "the dropped column is left on the target")

	recs, err := kc.ReadCommitted(t.Context(), "cdc.public.pgbench_accounts", "cdc.public.events")
	require.NoError(t, err)
	var withNote, events int
	for _, rec := range recs {
		var ev struct {
			After map[string]any `json:"after"`
		}
		require.NoError(t, json.Unmarshal(rec.Value, &ev))
		if rec.Topic == "cdc.public.events" {
			events++
		} else if _, ok := ev.After["note"]; ok {
			withNote++
		}
	}
	require.Positive(t, withNote, "Kafka records of pgbench_accounts carry the new field")
	require.Equal(t, 500+9, events)
}

// TestNewTableAfterSnapshot: with a snapshot and schema.create on, the
// snapshot creates the tables it copies, and a table created on the source
// afterwards (FOR ALL TABLES publication) is created on the target from its
// first Relation message and streamed.
func TestNewTableAfterSnapshot(t *testing.T) {
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	src.ExecT(t, "postgres", `CREATE TABLE first (id int PRIMARY KEY, v text)`,
		`INSERT INTO first SELECT g, 'v' || g FROM generate_series(1, 1000) g`)
	yaml := yamlConfig(src, nil, dst, t.TempDir()) + "schema: { create: true }\nsnapshot: { mode: initial }\nhttp: { listen: \"off\" }\n"
	r := startPipeline(t, yaml)
	waitSlot(t, src)
	require.Eventually(t, func() bool { return r.P.Snapshots()[0].Progress().Complete },
		time.Minute, 50*time.Millisecond, "snapshot not complete")
	src.ExecT(t, "postgres",
		`CREATE TABLE later (id bigint PRIMARY KEY, amount numeric(12,3) NOT NULL, tags text[], note text DEFAULT 'n')`,
		`INSERT INTO later SELECT g, g / 7.0, ARRAY['a', g::text], NULL FROM generate_series(1, 300) g`,
		`UPDATE first SET v = 'changed' WHERE id <= 10`,
		`DELETE FROM later WHERE id > 290`,
	)
	r.WaitApplied(t, marker(t, src), time.Minute)
	r.Stop(t)
	requireSameTables(t, src, dst, map[string]string{"first": "id", "later": "id"})
	var typ string
	require.NoError(t, queryRow(dst, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'later'::regclass AND attname = 'amount'`, &typ))
	require.Equal(t, "numeric(12,3)", typ, "created with the source's type and modifier")
}
