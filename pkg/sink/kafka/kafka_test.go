package kafka_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/kafkatest"
	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// TestKafkaEvents runs PostgreSQL → cdcd → kfake and checks every event:
// order per key, Debezium's shape, key changes, TOAST, truncate, lossless
// types, headers; then a restart resumes from the checkpoint topic without
// re-sending anything.
func TestKafkaEvents(t *testing.T) {
	pg := pgtest.StartT(t, pgtest.Options{})
	k := kafkatest.Start(t, kafkatest.Options{})
	pg.ExecT(t, "postgres",
		`CREATE TABLE items (id int PRIMARY KEY, qty int, note text)`,
		`CREATE TABLE docs (id int PRIMARY KEY, title text, body text)`,
		`ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL`,
		`CREATE TABLE gone (id int PRIMARY KEY, v text)`,
		`CREATE TABLE nokey (v text)`,
		`CREATE TABLE types (id bigint PRIMARY KEY, n numeric, big int8, ts timestamp, tstz timestamptz, d date,
		   t time, b bytea, j jsonb, js json, ia int[], ta text[], f float8, bo bool, u uuid, iv interval, na numeric[])`)
	dir := t.TempDir()
	yaml := yamlConfig(pg, k, dir, "")
	r := startPipeline(t, yaml)
	waitSlot(t, pg)
	body := strings.Repeat("0123456789abcdef", 8192)
	pg.ExecT(t, "postgres",
		`INSERT INTO items SELECT g, g, 'n' FROM generate_series(1, 50) g`,
		`UPDATE items SET qty = qty + 100 WHERE id <= 10`,
		`DELETE FROM items WHERE id = 3`,
		`UPDATE items SET id = 1000 WHERE id = 2`,
		`BEGIN; INSERT INTO items VALUES (500, 1, 'tmp'); UPDATE items SET qty = 2 WHERE id = 500; DELETE FROM items WHERE id = 500; COMMIT`,
		`INSERT INTO docs VALUES (1, 't', '`+body+`')`,
		`UPDATE docs SET title = 'new title' WHERE id = 1`,
		`INSERT INTO gone SELECT g, 'x' FROM generate_series(1, 20) g`,
		`TRUNCATE gone`,
		`INSERT INTO gone VALUES (1, 'after')`,
		`INSERT INTO nokey VALUES ('a'), ('b')`,
		`INSERT INTO types VALUES (9007199254740993, 12345678901234567890.123456789, -9223372036854775808,
		   '2024-05-01 10:00:00.123456', '2024-05-01 12:00:00.5+02', '2024-05-01', '10:00:00.25', '\x00ff10',
		   '{"a": [1, 2.50, "x"], "big": 12345678901234567890}', '{"k": "v"}', '{1,NULL,3}', '{"a b","q\"z",NULL}', 'NaN', true,
		   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 day 02:00:00', '{1.10,2.000001}')`,
	)
	r.WaitApplied(t, marker(t, pg), time.Minute)

	items := byKey(t, readTopic(t, k, "cdc.public.items"))
	require.Len(t, items, 52, "50 rows, key 1000 and key 500")
	ops := func(key string) string {
		var s []string
		for _, e := range items[key] {
			if e.Op == "" {
				s = append(s, "tombstone")
			} else {
				s = append(s, e.Op)
			}
		}
		return strings.Join(s, ",")
	}
	require.Equal(t, "c,u", ops(`{"id":1}`))
	require.Equal(t, "c,u,d", ops(`{"id":3}`))
	require.Equal(t, "c,u,d", ops(`{"id":2}`), "key change: delete under the old key")
	require.Equal(t, "c", ops(`{"id":1000}`), "key change: create under the new key")
	require.Equal(t, "c,u,d", ops(`{"id":500}`))
	require.Equal(t, "c", ops(`{"id":11}`))
	upd := items[`{"id":1}`][1]
	require.Equal(t, json.Number("101"), upd.After["qty"])
	require.Nil(t, upd.Before, "DEFAULT identity sends no old row for a plain update")
	del := items[`{"id":3}`][2]
	require.Nil(t, del.After)
	require.Equal(t, map[string]any{"id": json.Number("3")}, del.Before, "old key only; absent columns left out")
	src := upd.Source
	require.Equal(t, "cdcd", src["connector"])
	require.Equal(t, "postgres", src["db"])
	require.Equal(t, "public", src["schema"])
	require.Equal(t, "items", src["table"])
	require.Equal(t, "events", src["name"])
	require.NotEmpty(t, src["txId"])
	require.NotEmpty(t, src["lsn"])
	require.NotEmpty(t, src["ts_ms"])
	require.Equal(t, src["txId"], json.Number(upd.headers["cdcd.txid"]))
	require.NotEmpty(t, upd.headers["cdcd.commit_lsn"])
	require.Equal(t, "0", items[`{"id":3}`][2].headers["cdcd.tx_seq"])
	require.Equal(t, "2", items[`{"id":500}`][2].headers["cdcd.tx_seq"], "third change of its transaction")
	require.Equal(t, "9", items[`{"id":10}`][0].headers["cdcd.tx_seq"])

	docs := byKey(t, readTopic(t, k, "cdc.public.docs"))[`{"id":1}`]
	require.Len(t, docs, 2)
	require.Equal(t, body, docs[0].After["body"])
	require.Equal(t, map[string]any{"id": json.Number("1"), "title": "new title"}, docs[1].After, "unchanged TOAST is not faked")
	require.Equal(t, []string{"body"}, docs[1].Unchanged)

	gone := readTopic(t, k, "cdc.public.gone")
	truncParts := map[int32]bool{}
	for _, rec := range gone {
		e := decodeEvent(t, rec)
		if e.Op == "t" {
			require.Nil(t, rec.Key)
			require.Nil(t, e.Before)
			require.Nil(t, e.After)
			truncParts[rec.Partition] = true
		}
	}
	require.Len(t, truncParts, 4, "the truncate event reaches every partition")
	g1 := byKey(t, gone)[`{"id":1}`]
	require.Equal(t, "c", g1[0].Op)
	require.Equal(t, "after", g1[len(g1)-1].After["v"])

	nk := readTopic(t, k, "cdc.public.nokey")
	require.Len(t, nk, 2)
	require.Nil(t, nk[0].Key)

	ty := readTopic(t, k, "cdc.public.types")
	require.Len(t, ty, 1)
	require.Equal(t, `{"id":9007199254740993}`, string(ty[0].Key), "int8 key beyond 2^53 exact")
	row := decodeEvent(t, ty[0]).After
	require.Equal(t, map[string]any{
		"id":   json.Number("9007199254740993"),
		"n":    "12345678901234567890.123456789",
		"big":  json.Number("-9223372036854775808"),
		"ts":   json.Number("1714557600123456"),
		"tstz": "2024-05-01T10:00:00.5Z",
		"d":    json.Number("19844"),
		"t":    json.Number("36000250000"),
		"b":    "AP8Q",
		"j":    map[string]any{"a": []any{json.Number("1"), json.Number("2.50"), "x"}, "big": json.Number("12345678901234567890")},
		"js":   map[string]any{"k": "v"},
		"ia":   []any{json.Number("1"), nil, json.Number("3")},
		"ta":   []any{"a b", `q"z`, nil},
		"f":    "NaN",
		"bo":   true,
		"u":    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"iv":   "1 day 02:00:00",
		"na":   []any{"1.10", "2.000001"},
	}, row)

	// The checkpoint topic holds the sink's position.
	cps := readTopic(t, k, "cdcd.checkpoints")
	require.NotEmpty(t, cps)
	require.Equal(t, "events", string(cps[len(cps)-1].Key))

	// Restart: the position comes from Kafka, nothing is sent again.
	r.Stop(t)
	before := len(readTopic(t, k, "cdc.public.items"))
	r2 := startPipeline(t, yaml)
	waitSlot(t, pg)
	pg.ExecT(t, "postgres", `INSERT INTO items VALUES (51, 51, 'n')`)
	r2.WaitApplied(t, marker(t, pg), time.Minute)
	r2.Stop(t)
	after := readTopic(t, k, "cdc.public.items")
	require.Len(t, after, before+1, "only the new row after a restart")
	require.Len(t, byKey(t, after)[`{"id":51}`], 1)
}

// TestKafkaPlainAtLeastOnce: the plain envelope with at-least-once delivery
// and tombstones, one topic for every table.
func TestKafkaPlainAtLeastOnce(t *testing.T) {
	pg := pgtest.StartT(t, pgtest.Options{})
	k := kafkatest.Start(t, kafkatest.Options{Brokers: 1})
	pg.ExecT(t, "postgres",
		`CREATE TABLE a (id int PRIMARY KEY, v text)`,
		`CREATE TABLE b (x text, y int, PRIMARY KEY (x, y), big text)`,
		`ALTER TABLE b ALTER COLUMN big SET STORAGE EXTERNAL`)
	r := startPipeline(t, yamlConfig(pg, k, t.TempDir(), `
envelope: plain
delivery: at-least-once
compression: lz4
tombstones: true
topic: all.changes`))
	waitSlot(t, pg)
	big := strings.Repeat("z", 100000)
	pg.ExecT(t, "postgres",
		`INSERT INTO a VALUES (1, 'one'), (2, 'two')`,
		`DELETE FROM a WHERE id = 2`,
		`INSERT INTO b VALUES ('k', 1, '`+big+`')`,
		`UPDATE b SET big = big WHERE x = 'k'`,
		`UPDATE b SET y = 2 WHERE x = 'k'`)
	r.WaitApplied(t, marker(t, pg), time.Minute)
	r.Stop(t)
	recs := readTopic(t, k, "all.changes")
	got := map[string][]string{}
	for _, rec := range recs {
		h := map[string]string{}
		for _, hd := range rec.Headers {
			h[hd.Key] = string(hd.Value)
		}
		v := string(rec.Value)
		if rec.Value == nil {
			v = "null"
		}
		if h["cdcd.unchanged"] != "" {
			v += " unchanged=" + h["cdcd.unchanged"]
		}
		got[string(rec.Key)] = append(got[string(rec.Key)], h["cdcd.op"]+" "+v)
	}
	require.Equal(t, []string{`c {"id":1,"v":"one"}`}, got[`{"id":1}`])
	require.Equal(t, []string{`c {"id":2,"v":"two"}`, `d null`}, got[`{"id":2}`], "plain delete is the tombstone")
	kb := got[`{"x":"k","y":1}`]
	require.Len(t, kb, 3)
	require.Contains(t, kb[0], `"big":"zzzz`)
	require.Equal(t, `u {"x":"k","y":1} unchanged=big`, kb[1], "unchanged TOAST listed in a header")
	require.Equal(t, `d null`, kb[2], "key change: old key deleted")
	require.Equal(t, []string{`c {"x":"k","y":2} unchanged=big`}, got[`{"x":"k","y":2}`])
}
