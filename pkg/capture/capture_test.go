package capture_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
)

const schemaSQL = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE items (id int PRIMARY KEY, name text, qty int);
CREATE TABLE other (id int PRIMARY KEY, note text);
CREATE TABLE docs (id int PRIMARY KEY, title text, body text);
ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE TABLE fullid (id int PRIMARY KEY, v text);
ALTER TABLE fullid REPLICA IDENTITY FULL;
CREATE TABLE zoo (
  id int8 PRIMARY KEY, i2 int2, i4 int4, i8 int8, num numeric(40,10), f8 float8, b bool,
  t text, vc varchar(20), by bytea, d date, ts timestamp, tstz timestamptz, u uuid,
  js jsonb, arr int4[], tarr text[], iv interval, ip inet, m mood);
`

// workload makes every kind of change the issue lists, in separate
// transactions, and returns the TOASTed body it stored.
func workload(t *testing.T, c *pgtest.Cluster) string {
	body := strings.Repeat("0123456789abcdef", 8192) // 128 KiB, stored out of line
	c.ExecT(t, "postgres",
		`INSERT INTO items VALUES (1, 'one', 10), (2, 'two', 20), (3, 'three', 30)`,
		`UPDATE items SET qty = 11 WHERE id = 1`,
		`UPDATE items SET id = 100 WHERE id = 2`,
		`DELETE FROM items WHERE id = 3`,
		`INSERT INTO other VALUES (1, 'x')`,
		`TRUNCATE items, other`,
		`SELECT pg_logical_emit_message(true, 'app.event', 'hello')`,
		`SELECT pg_logical_emit_message(false, 'app.loose', 'outside')`,
		`INSERT INTO docs VALUES (1, 'title', '`+body+`')`,
		`UPDATE docs SET title = 'new title' WHERE id = 1`,
		`INSERT INTO fullid VALUES (1, 'a')`,
		`UPDATE fullid SET v = 'b' WHERE id = 1`,
		`INSERT INTO zoo VALUES (9223372036854775807, -32768, 2147483647, -9223372036854775808,
			'123456789012345678901234567890.0123456789', 1.5e300, true, 'tëxt ''q''', 'vc', '\x00ff10',
			'2024-02-29', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.123456+02',
			'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2.50, "x"]}', '{1,2,3}', '{"a b",NULL}',
			'1 day 02:03:04', '192.168.1.0/24', 'happy')`,
		`INSERT INTO zoo (id) VALUES (2)`,
	)
	return body
}

func TestCapturePrimaryPG15(t *testing.T) {
	pg := pgtest.StartT(t, pgtest.Options{Version: pgtest.V15})
	pg.ExecT(t, "postgres", schemaSQL)
	dir := t.TempDir()
	r := startCapture(t, testConfig(pg, dir))
	// The slot exists once streaming began; wait for the first ack.
	waitSlot(t, pg)
	body := workload(t, pg)
	r.waitPast(t, marker(t, pg), 30*time.Second)
	r.stop(t)
	checkWorkload(t, dir, body)
}

func TestCaptureStandbyPG17(t *testing.T) {
	primary := pgtest.StartT(t, pgtest.Options{Version: pgtest.V17})
	primary.ExecT(t, "postgres", schemaSQL, `CREATE PUBLICATION cdcd FOR ALL TABLES`)
	standby := primary.StartStandbyT(t, pgtest.Options{})
	dir := t.TempDir()
	cfg := testConfig(standby, dir)
	cfg.Source.PrimaryDSN = primary.DSN("postgres")
	r := startCapture(t, cfg)
	waitSlot(t, standby)
	// Once a marker is in the trail the stream is consistent before it:
	// what the workload commits next is all decoded.
	r.waitPast(t, marker(t, primary), 60*time.Second)
	body := workload(t, primary)
	r.waitPast(t, marker(t, primary), 60*time.Second)
	r.stop(t)
	checkWorkload(t, dir, body)
}

// waitSlot waits until capture's slot is consistent and streaming.
func waitSlot(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	require.Eventually(t, func() bool {
		var active bool
		// Not active alone: the slot is active while its creation still
		// waits for consistency (seconds on a standby), and what commits
		// before its consistent point is not in its stream.
		err := query(c, "SELECT active AND confirmed_flush_lsn IS NOT NULL FROM pg_replication_slots WHERE slot_name = 'cdcd'", &active)
		return err == nil && active
	}, 60*time.Second, 50*time.Millisecond, "slot cdcd not active")
}

func checkWorkload(t *testing.T, dir string, body string) {
	t.Helper()
	txs, loose := readTrailAll(t, dir)
	require.Len(t, loose, 1, "one non-transactional message")
	require.Equal(t, "app.loose", loose[0].Message.Prefix)
	require.Equal(t, "outside", string(loose[0].Message.Content))
	cs := userChanges(txs)
	next := func(op change.Op, table string) *change.Change {
		t.Helper()
		require.NotEmpty(t, cs, "expected %s on %s, trail ended", op, table)
		c := cs[0]
		cs = cs[1:]
		require.Equal(t, op, c.Op, "%+v", c)
		if table != "" {
			require.Equal(t, table, c.Relation.QualifiedName())
		}
		return c
	}
	text := func(v change.Value) string {
		t.Helper()
		require.Equal(t, change.ValueText, v.Kind)
		return string(v.Data)
	}

	for i, name := range []string{"one", "two", "three"} {
		c := next(change.OpInsert, "public.items")
		require.Equal(t, name, text(col(c, c.New, "name")), "insert %d", i)
		require.Equal(t, []int{0}, c.Relation.PrimaryKey)
	}
	c := next(change.OpUpdate, "public.items")
	require.Nil(t, c.Old, "no key change: no old tuple")
	require.Equal(t, "11", text(col(c, c.New, "qty")))

	c = next(change.OpUpdate, "public.items") // key change
	require.True(t, c.OldKeyOnly)
	require.Equal(t, "2", text(col(c, c.Old, "id")))
	require.Equal(t, change.ValueAbsent, col(c, c.Old, "name").Kind, "non-key column of a K tuple is absent, not NULL")
	require.Equal(t, "100", text(col(c, c.New, "id")))

	c = next(change.OpDelete, "public.items")
	require.Equal(t, "3", text(col(c, c.Old, "id")))
	next(change.OpInsert, "public.other")

	c = next(change.OpTruncate, "")
	var names []string
	for _, r := range c.Truncate.Relations {
		names = append(names, r.QualifiedName())
	}
	require.ElementsMatch(t, []string{"public.items", "public.other"}, names)

	c = next(change.OpMessage, "")
	require.True(t, c.Message.Transactional)
	require.Equal(t, "app.event", c.Message.Prefix)
	require.Equal(t, "hello", string(c.Message.Content))
	// The non-transactional message sits outside any transaction: readTrail
	// skips those, so check it separately below.

	c = next(change.OpInsert, "public.docs")
	require.Equal(t, body, text(col(c, c.New, "body")))
	c = next(change.OpUpdate, "public.docs")
	require.Equal(t, "new title", text(col(c, c.New, "title")))
	require.Equal(t, change.ValueUnchanged, col(c, c.New, "body").Kind, "an untouched TOASTed value is unchanged, never NULL")

	next(change.OpInsert, "public.fullid")
	c = next(change.OpUpdate, "public.fullid")
	require.NotNil(t, c.Old)
	require.False(t, c.OldKeyOnly, "REPLICA IDENTITY FULL sends the whole old row")
	require.Equal(t, "a", text(col(c, c.Old, "v")))
	require.Equal(t, []int{0}, c.Relation.PrimaryKey, "the real key comes from the catalog, not the FULL identity flags")

	c = next(change.OpInsert, "public.zoo")
	want := map[string]string{
		"id": "9223372036854775807", "i2": "-32768", "i4": "2147483647", "i8": "-9223372036854775808",
		"num": "123456789012345678901234567890.0123456789", "f8": "1.5e+300", "b": "t",
		"t": "tëxt 'q'", "vc": "vc", "by": `\x00ff10`, "d": "2024-02-29", "ts": "2024-02-29 13:14:15.123456",
		"tstz": "2024-02-29 11:14:15.123456+00", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"js": `{"a": [1, 2.50, "x"]}`, "arr": "{1,2,3}", "tarr": `{"a b",NULL}`, "iv": "1 day 02:03:04",
		"ip": "192.168.1.0/24", "m": "happy",
	}
	for name, v := range want {
		require.Equal(t, v, text(col(c, c.New, name)), "column %s", name)
	}
	require.Equal(t, "numeric", c.Relation.Columns[c.Relation.Column("num")].TypeName)
	// Typed accessors through pgx's type map.
	m := pgtype.NewMap()
	typed := func(name string) any {
		i := c.Relation.Column(name)
		v, err := c.New[i].Decode(m, c.Relation.Columns[i].TypeOID)
		require.NoError(t, err, name)
		return v
	}
	require.Equal(t, int64(9223372036854775807), typed("id"))
	require.Equal(t, int64(-9223372036854775808), typed("i8"))
	num := typed("num").(pgtype.Numeric)
	require.Equal(t, "1234567890123456789012345678900123456789", num.Int.String())
	require.Equal(t, int32(-10), num.Exp)
	require.Equal(t, []byte{0, 0xff, 0x10}, typed("by"))
	require.Equal(t, time.Date(2024, 2, 29, 11, 14, 15, 123456000, time.UTC), typed("tstz").(time.Time).UTC())
	require.Equal(t, map[string]any{"a": []any{float64(1), 2.5, "x"}}, typed("js"))
	require.Equal(t, "happy", typed("m"), "enums keep their text")

	c = next(change.OpInsert, "public.zoo")
	require.Equal(t, change.ValueNull, col(c, c.New, "num").Kind)
	require.Empty(t, cs, "no unexpected changes")
}

// TestGroupCommitPause: under a steady stream of small transactions the
// trail's fsyncs do not run back to back (hundreds a second, the disk busy
// with them all the time): after each, capture pauses twice its duration,
// so fsyncs take at most about a third of the time. Every transaction still
// arrives.
func TestGroupCommitPause(t *testing.T) {
	pg := pgtest.StartT(t, pgtest.Options{Version: pgtest.V15})
	pg.ExecT(t, "postgres", `CREATE TABLE ticks (id int PRIMARY KEY)`,
		`CREATE PROCEDURE tick(seconds float8) LANGUAGE plpgsql AS $$
		DECLARE stop timestamptz := clock_timestamp() + seconds * interval '1 second'; i int := 0;
		BEGIN WHILE clock_timestamp() < stop LOOP i := i + 1; INSERT INTO ticks VALUES (i); COMMIT; END LOOP; END $$`)
	cfg := testConfig(pg, t.TempDir())
	cfg.GroupCommitInterval = 10 * time.Second // the cap: let the pause be twice the fsync
	r := startCapture(t, cfg)
	waitSlot(t, pg)
	r.waitPast(t, marker(t, pg), 30*time.Second)

	before, t0 := r.c.Stats(), time.Now()
	pg.ExecT(t, "postgres", `SET synchronous_commit = off`, `CALL tick(2)`)
	r.waitPast(t, marker(t, pg), 30*time.Second)
	after, span := r.c.Stats(), time.Since(t0)
	var n int
	require.NoError(t, query(pg, `SELECT count(*) FROM ticks`, &n))
	require.Greater(t, n, 1000, "the workload committed too few transactions to tell")
	syncs, busy := after.Syncs-before.Syncs, after.SyncTime-before.SyncTime
	require.GreaterOrEqual(t, syncs, uint64(3))
	// Each fsync is followed by a pause of twice its length before the
	// next starts: fsyncs take about a third of the span (the last one
	// and one that began before it can add more when the disk stalls).
	// Back to back they take most of it (0.93 measured alone, 0.68 with
	// two other test runs on the machine); with the pause 0.27.
	t.Logf("%d fsyncs took %v of %v for %d transactions", syncs, busy, span, n)
	require.LessOrEqual(t, busy.Seconds(), 0.5*span.Seconds(),
		"%d fsyncs took %v of %v for %d transactions", syncs, busy, span, n)

	r.stop(t)
	got := 0
	for _, c := range userChanges(readTrail(t, cfg.TrailDir)) {
		if c.Op == change.OpInsert && c.Relation.Name == "ticks" {
			got++
		}
	}
	require.Equal(t, n, got, "every committed row is in the trail")
}
