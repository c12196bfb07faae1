package dynamodb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/dynalitetest"
	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/internal/pipetest"
	"github.com/cdcd-io/cdcd/internal/typezoo"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/config"
	"github.com/cdcd-io/cdcd/pkg/pipeline"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/sink/dynamodb"
)

// yamlConfig is a cdcd config from pg to one dynamodb sink on srv; extra is
// YAML added to the sink entry, top is YAML added at the top level.
func yamlConfig(pg *pgtest.Cluster, srv *dynalitetest.Server, trailDir, extra, top string) string {
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
  - name: ddb
    kind: dynamodb
    region: us-east-1
    endpoint: %s
    batch: { max_rows: 2000, max_delay: 50ms }
%s
schema: { create: true }
log:
  format: text
%s
`, pg.DSN("postgres"), trailDir, srv.Endpoint, indent(extra, "    "), top)
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

// zooColumn is a zoo column and its SQL type.
type zooColumn struct{ name, typ string }

func zooColumns(t *testing.T, pg *pgtest.Cluster) []zooColumn {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = 'zoo'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`)
	require.NoError(t, err)
	var cols []zooColumn
	for rows.Next() {
		var c zooColumn
		require.NoError(t, rows.Scan(&c.name, &c.typ))
		cols = append(cols, c)
	}
	require.NoError(t, rows.Err())
	return cols
}

// sqlText turns an attribute read back from DynamoDB into PostgreSQL input
// text (nil for NULL): what a reader does with the documented mapping.
func sqlText(t *testing.T, v types.AttributeValue) *string {
	str := func(s string) *string { return &s }
	switch x := v.(type) {
	case *types.AttributeValueMemberNULL:
		return nil
	case *types.AttributeValueMemberS:
		return str(x.Value)
	case *types.AttributeValueMemberN:
		return str(x.Value)
	case *types.AttributeValueMemberBOOL:
		return str(strconv.FormatBool(x.Value))
	case *types.AttributeValueMemberB:
		return str(fmt.Sprintf(`\x%x`, x.Value))
	case *types.AttributeValueMemberL:
		return str(arrayText(t, x))
	case *types.AttributeValueMemberM:
		b, err := json.Marshal(jsonOf(v))
		require.NoError(t, err)
		return str(string(b))
	}
	t.Fatalf("unexpected attribute %T", v)
	return nil
}

// arrayText is PostgreSQL array input for a list.
func arrayText(t *testing.T, l *types.AttributeValueMemberL) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range l.Value {
		if i > 0 {
			b.WriteByte(',')
		}
		switch x := e.(type) {
		case *types.AttributeValueMemberNULL:
			b.WriteString("NULL")
		case *types.AttributeValueMemberL:
			b.WriteString(arrayText(t, x))
		default:
			s := sqlText(t, e)
			b.WriteByte('"')
			b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(*s))
			b.WriteByte('"')
		}
	}
	b.WriteByte('}')
	return b.String()
}

func jsonOf(v types.AttributeValue) any {
	switch x := v.(type) {
	case *types.AttributeValueMemberNULL:
		return nil
	case *types.AttributeValueMemberS:
		return x.Value
	case *types.AttributeValueMemberN:
		return json.Number(x.Value)
	case *types.AttributeValueMemberBOOL:
		return x.Value
	case *types.AttributeValueMemberL:
		out := make([]any, len(x.Value))
		for i, e := range x.Value {
			out[i] = jsonOf(e)
		}
		return out
	case *types.AttributeValueMemberM:
		out := map[string]any{}
		for k, e := range x.Value {
			out[k] = jsonOf(e)
		}
		return out
	}
	return fmt.Sprintf("%T", v)
}

// compareZooRow checks every column of zoo row id against the item: the
// source compares its own value with the item's value cast to the
// column's type (numbers and floats by value, json as jsonb, the rest by
// text), so numerics are exact and NaN equals NaN.
func compareZooRow(t *testing.T, pg *pgtest.Cluster, cols []zooColumn, id int, item map[string]types.AttributeValue) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	require.NoError(t, err)
	defer conn.Close(ctx)
	for _, c := range cols {
		av, ok := item[c.name]
		require.True(t, ok, "row %d: column %s missing from the item", id, c.name)
		var val *string
		if _, null := av.(*types.AttributeValueMemberNULL); !null && (c.typ == "json" || c.typ == "jsonb") && !isS(av) {
			b, err := json.Marshal(jsonOf(av))
			require.NoError(t, err)
			s := string(b)
			val = &s
		} else {
			val = sqlText(t, av)
		}
		col := pgx.Identifier{c.name}.Sanitize()
		var expr string
		switch {
		case c.typ == "json" || c.typ == "jsonb":
			expr = fmt.Sprintf("%s::jsonb IS NOT DISTINCT FROM $1::jsonb", col)
		case strings.HasPrefix(c.typ, "numeric") || c.typ == "real" || c.typ == "double precision":
			expr = fmt.Sprintf("%s IS NOT DISTINCT FROM $1::%s", col, c.typ)
		default:
			expr = fmt.Sprintf("%s::text IS NOT DISTINCT FROM ($1::%s)::text", col, c.typ)
		}
		var same bool
		var src *string
		require.NoError(t, conn.QueryRow(ctx, fmt.Sprintf("SELECT %s, %s::text FROM zoo WHERE id = $2", expr, col), val, id).Scan(&same, &src),
			"row %d column %s (%s): item value %v", id, c.name, c.typ, deref(val))
		require.True(t, same, "row %d column %s (%s): source %q, item %q", id, c.name, c.typ, deref(src), deref(val))
	}
}

func isS(v types.AttributeValue) bool { _, ok := v.(*types.AttributeValueMemberS); return ok }

func deref(s *string) string {
	if s == nil {
		return "<NULL>"
	}
	if len(*s) > 200 {
		return (*s)[:200] + "…"
	}
	return *s
}

// TestTypeZoo: the type zoo through the snapshot (row 1) and the stream
// (rows 2–4, then an update leaving the TOASTed column unchanged and a key
// change) into DynamoDB: every column read back compares equal to the
// source's value, numerics exactly (a 40-digit numeric, NaN), with the
// documented attribute types; row 4 (over 400 KB) lands in the dead-letter
// file.
func TestTypeZoo(t *testing.T) {
	pg := pgtest.StartT(t, pgtest.Options{})
	srv := dynalitetest.StartT(t)
	setAWSEnv(t)
	pg.ExecT(t, "postgres", typezoo.DDL, strings.Join(typezoo.Rows[:2], ";\n"))
	trail := t.TempDir()
	r := pipetest.Start(t, yamlConfig(pg, srv, trail, "dead_letter: true", "snapshot: { mode: initial }"), testLogger())
	pg.WaitSlotActiveT(t, "cdcd")
	pg.ExecT(t, "postgres", strings.Join(append([]string{typezoo.Rows[0]}, typezoo.Rows[2:]...), ";\n"))
	pg.ExecT(t, "postgres", `UPDATE zoo SET kind = 'updated', d = '-0' WHERE id = 1`, `UPDATE zoo SET id = 20 WHERE id = 2`)
	r.WaitApplied(t, pg.MarkerT(t), 2*time.Minute)
	r.Stop(t)

	items := scan(t, srv.Client(), "public_zoo", "id")
	require.Len(t, items, 3, "rows 1, 20, 3 (row 4 is over 400 KB)")
	cols := zooColumns(t, pg)
	for _, id := range []int{1, 20, 3} {
		compareZooRow(t, pg, cols, id, items[strconv.Itoa(id)])
	}
	one := items["1"]
	require.Equal(t, "updated", attr(one["kind"]))
	require.Len(t, attr(one["big"]), 8000*32, "the unchanged TOASTed column is kept")
	kinds := map[string]string{}
	for c, v := range one {
		kinds[c] = fmt.Sprintf("%T", v)[len("*types.AttributeValueMember"):]
	}
	require.Equal(t, map[string]string{"i8": "N", "i4": "N", "num": "S", "numf": "S", "r": "S", "d": "S", "b": "BOOL", "by": "B",
		"j": "M", "jb": "S", "ia": "L", "ia2": "L", "tstz": "S", "big": "S"},
		pick(kinds, "i8", "i4", "num", "numf", "r", "d", "b", "by", "j", "jb", "ia", "ia2", "tstz", "big"),
		"NaN, a 40-digit numeric, -0 and ±Infinity are strings; a json document with a 401-digit number is its text")
	require.Equal(t, "NaN", attr(one["num"]))
	require.Equal(t, "123456789012345678901234567890.0123456789", attr(one["numf"]))
	require.Contains(t, attr(one["tstz"]), "T", "ISO-8601")
	require.Equal(t, "N", kinds["cdcd_version"])

	// Row 1 came through the snapshot's bulk path, which records its chunk.
	var chunks []string
	for k := range scan(t, srv.Client(), "cdcd_checkpoints", "sink") {
		if strings.HasPrefix(k, "ddb#snapshot#") {
			chunks = append(chunks, k)
		}
	}
	require.Len(t, chunks, 1, "one snapshot chunk recorded as loaded")
	dl, err := os.ReadFile(filepath.Join(trail, "ddb.dead-letter.jsonl"))
	require.NoError(t, err)
	require.Contains(t, string(dl), `"key":{"id":{"N":"4"}}`)
	t.Logf("zoo: rows 1, 20, 3 equal column by column (%d columns); row 4 (%d bytes of dead letter) recorded", len(cols), len(dl))
}

func pick(m map[string]string, keys ...string) map[string]string {
	out := map[string]string{}
	for _, k := range keys {
		out[k] = m[k]
	}
	return out
}

const accounts = 20

// workload commits, until stopped, transactions that insert the next
// numbered rows, update 1–3 random accounts and now and then delete a
// numbered row.
type workload struct {
	committed atomic.Int64
	stop      context.CancelFunc
	done      chan error
}

func setupWorkload(t testing.TB, pg *pgtest.Cluster) {
	pg.ExecT(t, "postgres",
		`CREATE TABLE numbered (n int PRIMARY KEY, pad text)`,
		`CREATE TABLE acct (id int PRIMARY KEY, v int NOT NULL, note text)`,
		fmt.Sprintf(`INSERT INTO acct SELECT g, 0, 'a' FROM generate_series(1, %d) g`, accounts))
}

func startWorkload(t testing.TB, pg *pgtest.Cluster) *workload {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &workload{stop: cancel, done: make(chan error, 1)}
	go func() {
		w.done <- func() error {
			conn, err := pgx.Connect(context.Background(), pg.DSN("postgres"))
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			n := int64(0)
			for ctx.Err() == nil {
				k := int64(1 + rand.IntN(5))
				b := &pgx.Batch{}
				b.Queue(`INSERT INTO numbered SELECT g, repeat('p', 50) FROM generate_series($1::int, $2::int) g`, n+1, n+k)
				for range 1 + rand.IntN(3) {
					b.Queue(`UPDATE acct SET v = v + 1, note = md5(random()::text) WHERE id = $1`, 1+rand.IntN(accounts))
				}
				if n > 10 && rand.IntN(3) == 0 {
					b.Queue(`DELETE FROM numbered WHERE n = $1`, 1+rand.Int64N(n))
				}
				if n > 10 && rand.IntN(5) == 0 {
					b.Queue(`UPDATE numbered SET n = -n WHERE n = $1`, 1+rand.Int64N(n)) // a key change
				}
				tx, err := conn.Begin(context.Background())
				if err != nil {
					return err
				}
				if err := tx.SendBatch(context.Background(), b).Close(); err != nil {
					return err
				}
				if err := tx.Commit(context.Background()); err != nil {
					return err
				}
				n += k
				w.committed.Store(n)
				time.Sleep(time.Millisecond) // pacing, not a wait: spreads the workload over the kills
			}
			return nil
		}()
	}()
	t.Cleanup(func() { cancel(); <-w.done; w.done <- nil })
	return w
}

func (w *workload) finish(t testing.TB) {
	t.Helper()
	w.stop()
	require.NoError(t, <-w.done)
	w.done <- nil
}

// verify compares both tables, by a full scan, with the source: every
// item equals its row, no extra items, deleted rows gone.
func verify(t testing.TB, pg *pgtest.Cluster, c *awsddb.Client) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	require.NoError(t, err)
	defer conn.Close(ctx)
	for _, tc := range []struct{ table, key, query string }{
		{"numbered", "n", `SELECT n::text, json_build_object('pad', pad)::text FROM numbered`},
		{"acct", "id", `SELECT id::text, json_build_object('v', v::text, 'note', note)::text FROM acct`},
	} {
		want := map[string]map[string]string{}
		rows, err := conn.Query(ctx, tc.query)
		require.NoError(t, err)
		for rows.Next() {
			var k, js string
			require.NoError(t, rows.Scan(&k, &js))
			m := map[string]string{}
			require.NoError(t, json.Unmarshal([]byte(js), &m))
			want[k] = m
		}
		require.NoError(t, rows.Err())
		items := scan(t, c, "public_"+tc.table, tc.key)
		got := map[string]map[string]string{}
		for k, it := range items {
			m := map[string]string{}
			for col := range want[k] {
				m[col] = attr(it[col])
			}
			if want[k] == nil {
				m["<extra item>"] = fmt.Sprint(len(it))
			}
			got[k] = m
		}
		require.Equal(t, len(want), len(got), "%s: rows vs items", tc.table)
		require.Equal(t, want, got, tc.table)
		t.Logf("%s: %d items equal their rows", tc.table, len(got))
	}
}

// checkpointPast reports whether the sink's checkpoint item is past l.
func checkpointPast(t testing.TB, c *awsddb.Client, l change.LSN) bool {
	out, err := c.GetItem(context.Background(), &awsddb.GetItemInput{TableName: aws.String("cdcd_checkpoints"),
		Key: map[string]types.AttributeValue{"sink": &types.AttributeValueMemberS{Value: "ddb"}}, ConsistentRead: aws.Bool(true)})
	if err != nil || out.Item == nil {
		return false
	}
	end, err := strconv.ParseUint(attr(out.Item["end_lsn"]), 10, 64)
	require.NoError(t, err)
	return change.LSN(end) > l
}

// TestKill9 SIGKILLs `cdcd run` repeatedly while a pgbench-like workload
// commits; dynalite lives in the test process and outlives every cdcd.
// Afterwards a full scan of each table equals the source: every item its
// row, no extra items, deleted rows gone.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the cdcd binary")
	}
	pg := pgtest.StartT(t, pgtest.Options{})
	srv := dynalitetest.StartT(t)
	setupWorkload(t, pg)
	bin := pgtest.BuildCdcdT(t)
	cfg := filepath.Join(t.TempDir(), "cdcd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(yamlConfig(pg, srv, t.TempDir(), "", "snapshot: { mode: initial }")), 0o600))
	logPath := filepath.Join(t.TempDir(), "cdcd.log")
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", cfg)
		cmd.Env = append(os.Environ(), dynalitetest.Env()...)
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = f, f
		require.NoError(t, cmd.Start())
		return cmd
	}
	first := start()
	pg.WaitSlotActiveT(t, "cdcd")
	w := startWorkload(t, pg)
	_ = first.Process.Signal(syscall.SIGKILL)
	_ = first.Wait()
	for i := range 6 {
		cmd := start()
		// Not a synchronisation: the kill lands at a random instant of
		// start-up, catch-up or streaming, which is the point of the test.
		time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		t.Logf("kill %d: %d rows committed so far", i+1, w.committed.Load())
	}
	w.finish(t)
	m := pg.MarkerT(t)
	cmd := start()
	c := srv.Client()
	for deadline := time.Now().Add(3 * time.Minute); !checkpointPast(t, c, m); {
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logPath)
			t.Fatalf("sink did not catch up; cdcd log:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond) // poll interval
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "clean stop exits 0")
	verify(t, pg, c)
}

// TestPipelineFaults runs the workload through an in-process pipeline whose
// sink's client injects throttling and UnprocessedItems on 30% of calls
// (and lost responses): the same end state, and no change of a key is ever
// overtaken by an older one (checked on every call by the middleware).
func TestPipelineFaults(t *testing.T) {
	pg := pgtest.StartT(t, pgtest.Options{})
	srv := dynalitetest.StartT(t)
	setAWSEnv(t)
	setupWorkload(t, pg)
	f, err := config.Parse([]byte(yamlConfig(pg, srv, t.TempDir(), "", "")))
	require.NoError(t, err)
	faults := newFaults(0.3)
	pc := f.PipelineConfig(testLogger())
	pc.Sinks[0].Apply.MinBackoff = 20 * time.Millisecond
	pc.Sinks[0].Apply.MaxBackoff = 200 * time.Millisecond
	dc := f.Sinks[0].DynamoDBConfig(testLogger())
	dc.APIOptions = faults.options()
	dc.MaxBackoff = 50 * time.Millisecond
	dc.MaxAttempts = 3
	pc.Sinks[0].Open = func(ctx context.Context) (sink.Sink, error) { return dynamodb.New(ctx, dc) }
	p, err := pipeline.New(pc)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	pg.WaitSlotActiveT(t, "cdcd")
	w := startWorkload(t, pg)
	for deadline := time.Now().Add(time.Minute); w.committed.Load() < 3000 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	w.finish(t)
	m := pg.MarkerT(t)
	for deadline := time.Now().Add(3 * time.Minute); p.Workers()[0].Stats().Position.EndLSN <= m; {
		require.False(t, time.Now().After(deadline), "sink did not catch up: %+v", p.Workers()[0].Stats())
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	cancel()
	require.NoError(t, <-done)
	done <- nil
	verify(t, pg, srv.Client())
	faults.check(t)
	t.Logf("calls %d %v, injected throttles %d, injected unprocessed items %d, apply worker %+v", faults.calls.Load(), faults.callsByOp(),
		faults.throttled.Load(), faults.unprocessed.Load(), p.Workers()[0].Stats())
	require.Positive(t, faults.throttled.Load())
	require.Positive(t, faults.unprocessed.Load())
}
