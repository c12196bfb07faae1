package kafka

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

func TestValues(t *testing.T) {
	e := newValues()
	for _, c := range []struct {
		oid  uint32
		text string
		want string
	}{
		{oidBool, "t", `true`},
		{oidBool, "f", `false`},
		{oidInt8, "9007199254740993", `9007199254740993`},
		{oidInt8, "-9223372036854775808", `-9223372036854775808`},
		{oidInt2, "-7", `-7`},
		{oidFloat8, "1.5e-07", `1.5e-07`},
		{oidFloat8, "NaN", `"NaN"`},
		{oidFloat4, "-Infinity", `"-Infinity"`},
		{oidNumeric, "12345678901234567890.123456789", `"12345678901234567890.123456789"`},
		{oidNumeric, "NaN", `"NaN"`},
		{oidBytea, `\x00ff10`, `"AP8Q"`},
		{oidBytea, `a\\b\001`, `"YVxiAQ=="`},
		{oidJSONB, `{"a": [1, 2.50, "x"]}`, `{"a": [1, 2.50, "x"]}`},
		{oidTimestamptz, "2024-05-01 12:00:00.123456+02", `"2024-05-01T10:00:00.123456Z"`},
		{oidTimestamptz, "infinity", `"infinity"`},
		{oidTimestamp, "1970-01-01 00:00:01.000001", `1000001`},
		{oidTimestamp, "1969-12-31 23:59:59", `-1000000`},
		{oidTimestamp, "-infinity", `"-infinity"`},
		{oidDate, "1970-01-02", `1`},
		{oidDate, "1969-12-31", `-1`},
		{oidTime, "00:00:01.5", `1500000`},
		{25, "a \"quoted\"\n\ttext\\ \x01", `"a \"quoted\"\n\ttext\\ \u0001"`},
		{2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`},
		{1186, "1 year 2 mons 3 days 04:05:06.7", `"1 year 2 mons 3 days 04:05:06.7"`},
		{1007, "{1,2,NULL}", `[1,2,null]`},
		{1007, "{}", `[]`},
		{1007, "[0:1]={5,6}", `[5,6]`},
		{1007, "{{1,2},{3,4}}", `[[1,2],[3,4]]`},
		{1009, `{"a b","q\"z",NULL,"NULL",plain}`, `["a b","q\"z",null,"NULL","plain"]`},
		{1231, "{1.10,NaN}", `["1.10","NaN"]`},
		{1001, `{"\\x01","\\xff"}`, `["AQ==","/w=="]`},
		{3807, `{"{\"a\": 1}",null}`, `[{"a": 1},null]`},
		{1115, `{"2024-01-01 00:00:00",infinity}`, `[1704067200000000,"infinity"]`},
	} {
		k, el := kindOf(e.types, c.oid)
		got, err := e.appendValue(nil, c.oid, k, el, change.Text(c.text))
		require.NoError(t, err, "%d %q", c.oid, c.text)
		require.Equal(t, c.want, string(got), "oid %d %q", c.oid, c.text)
		require.True(t, json.Valid(got), "valid JSON: %s", got)
	}
	got, err := e.appendValue(nil, oidInt4, kindInt, 0, change.Null)
	require.NoError(t, err)
	require.Equal(t, "null", string(got))
}

func TestValuesBinary(t *testing.T) {
	e := newValues()
	got, err := e.appendValue(nil, oidInt8, kindInt, 0, change.Value{Kind: change.ValueBinary, Data: []byte{0, 0, 0, 0, 0, 0, 1, 0}})
	require.NoError(t, err)
	require.Equal(t, "256", string(got))
}

func TestValuesErrors(t *testing.T) {
	e := newValues()
	for _, c := range []struct {
		oid  uint32
		text string
	}{
		{oidInt4, "12a"},
		{oidBytea, `\xzz`},
		{1007, "{1,2"},
		{1007, "{1,2}x"},
		{1009, `{"abc}`},
	} {
		k, el := kindOf(e.types, c.oid)
		_, err := e.appendValue(nil, c.oid, k, el, change.Text(c.text))
		require.Error(t, err, "%d %q", c.oid, c.text)
	}
}

func TestDebeziumEnvelope(t *testing.T) {
	rel := &change.Relation{Schema: "public", Name: "docs", Columns: []change.Column{
		{Name: "id", TypeOID: oidInt4}, {Name: "title", TypeOID: 25}, {Name: "body", TypeOID: 25},
	}, PrimaryKey: []int{0}}
	enc := newEncoder(Config{Name: "events", Database: "app"}.withDefaults())
	ri := enc.rel(rel)
	require.Equal(t, "cdc.public.docs", ri.topic)
	tx := &change.Tx{XID: 42, CommitTime: time.UnixMilli(1714557600123)}
	ev := event{op: 'u', before: change.Row{change.Text("1"), {}, {}},
		after: change.Row{change.Text("1"), change.Text("new"), change.Unchanged}, tx: tx, lsn: 0x16B374D848, nowMs: 1714557601000}
	v, err := enc.appendDebezium(nil, ri, &ev)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(v, &got), "%s", v)
	require.Equal(t, map[string]any{
		"before": map[string]any{"id": 1.0},
		"after":  map[string]any{"id": 1.0, "title": "new"},
		"source": map[string]any{"version": Version, "connector": "cdcd", "name": "events", "snapshot": "false",
			"db": "app", "schema": "public", "table": "docs", "ts_ms": 1714557600123.0, "txId": 42.0, "lsn": float64(0x16B374D848)},
		"op": "u", "ts_ms": 1714557601000.0, "unchanged": []any{"body"},
	}, got)
	k, err := enc.appendKey(nil, ri, ev.after)
	require.NoError(t, err)
	require.Equal(t, `{"id":1}`, string(k))
	require.False(t, keyChanged(ri, &change.Change{Old: change.Row{change.Text("1"), {}, {}}, New: ev.after}))
	require.True(t, keyChanged(ri, &change.Change{Old: change.Row{change.Text("2"), {}, {}}, New: ev.after}))
}

func TestArena(t *testing.T) {
	var a arena
	x := a.copy([]byte("hello"))
	y := a.copy([]byte("world"))
	require.Equal(t, "hello", string(x))
	require.Equal(t, "world", string(y))
	big := a.end(append(a.begin(), make([]byte, 3*arenaChunk)...)) // outgrows the chunk
	require.Len(t, big, 3*arenaChunk)
	z := a.copy([]byte("!"))
	require.Equal(t, "hello", string(x))
	require.Equal(t, "!", string(z))
	require.Nil(t, a.end(nil))

	// After release the chunks are reused, records zeroed.
	r := a.record()
	r.Topic, r.Partition = "t", 3
	h := a.headers(2)
	a.release()
	w := a.copy([]byte("again"))
	require.Equal(t, "again", string(w))
	require.Same(t, &x[0], &w[0], "the first chunk is reused")
	r2 := a.record()
	require.Same(t, r, r2)
	require.Equal(t, kgo.Record{}, *r2)
	require.Same(t, &h[0], &a.headers(1)[0])
	for range 3 * arenaChunk / 4000 { // fill several chunks
		a.copy(make([]byte, 4000))
	}
	n := len(a.fullBufs)
	require.Greater(t, n, 1)
	a.release()
	require.Empty(t, a.fullBufs)
	require.Len(t, a.freeBufs, n)
	require.Len(t, a.headers(5000), 5000, "more headers than a chunk holds")
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Name: "k", Brokers: []string{"b:9092"}}
	require.NoError(t, ok.Validate())
	for _, c := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Brokers = nil }, "brokers is required"},
		{func(c *Config) { c.Delivery = "twice" }, "delivery"},
		{func(c *Config) { c.Compression = "brotli" }, "compression"},
		{func(c *Config) { c.Envelope = "avro" }, "envelope"},
		{func(c *Config) { c.SASL.Mechanism = "kerberos" }, "sasl.mechanism"},
		{func(c *Config) { c.SASL.Mechanism = "aws-msk-iam" }, "sasl.region"},
		{func(c *Config) { c.TLS.CertFile = "x" }, "tls.cert_file"},
	} {
		cfg := ok
		c.mut(&cfg)
		require.ErrorContains(t, cfg.Validate(), c.want)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err       error
		retriable bool
	}{
		{fmt.Errorf("produce: %w", kerr.SaslAuthenticationFailed), false},
		{fmt.Errorf("produce: %w", kerr.TopicAuthorizationFailed), false},
		{fmt.Errorf("produce: %w", kerr.MessageTooLarge), false},
		{fmt.Errorf("%w: bad value", errEncode), false},
		{fmt.Errorf("produce: %w", kerr.InvalidRecord), true},
		{fmt.Errorf("commit: %w", kerr.UnknownServerError), true},
		{fmt.Errorf("produce: %w", kerr.ProducerFenced), true},
		{errors.New("EOF"), true},
	} {
		require.Equal(t, c.retriable, sink.IsRetriable(classify(c.err)), "%v", c.err)
	}
}
