package config

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/sink/dynamodb"
)

func TestDynamoDBSink(t *testing.T) {
	f, err := Parse([]byte(`
source: {dsn: "postgres://x@h/app"}
trail: {dir: /var/lib/cdcd}
schema: {create: true}
sinks:
  - name: ddb
    kind: dynamodb
    region: eu-west-1
    endpoint: http://127.0.0.1:8000
    table: "app_{table}"
    keys: { "public.orders": { partition: customer_id, sort: order_id } }
    document: nested
    json: string
    dead_letter: true
    dynamodb: { checkpoint_table: ck, parallelism: 4, max_backoff: 2s }
`))
	require.NoError(t, err)
	c := f.Sinks[0].DynamoDBConfig(nil)
	require.Equal(t, dynamodb.Config{
		Name: "ddb", Region: "eu-west-1", Endpoint: "http://127.0.0.1:8000", Table: "app_{table}",
		Keys:     map[string]dynamodb.Key{"public.orders": {Partition: "customer_id", Sort: "order_id"}},
		Document: "nested", JSON: "string", CheckpointTable: "ck", Parallelism: 4, MaxBackoff: 2 * time.Second,
		CreateTables: true, DeadLetter: filepath.Join("/var/lib/cdcd", "ddb.dead-letter.jsonl"),
	}, c)
	require.Len(t, f.PipelineConfig(slog.New(slog.DiscardHandler)).Sinks, 1)
}

func TestDynamoDBSinkErrors(t *testing.T) {
	for _, tc := range []struct{ name, sink, want string }{
		{"bad document", "document: deep", `sinks[d] (line 4): document "deep" is not flat or nested`},
		{"bad json", "json: blob", `sinks[d] (line 4): json "blob" is not map or string`},
		{"key without partition", `keys: {"public.t": {sort: b}}`, `sinks[d] (line 4): keys["public.t"].partition is required`},
		{"key not schema.table", `keys: {t: {partition: a}}`, `sinks[d] (line 4): keys: "t" is not schema.table`},
		{"endpoint not a URL", "endpoint: localhost:8000", `sinks[d] (line 4): endpoint "localhost:8000" is not an http:// or https:// URL`},
		{"dsn", "dsn: postgres://x", "sinks[d].dsn (line 6): dsn and password are for postgres sinks"},
		{"unknown key", "dynamodb: {parallel: 3}", `unknown key "parallel"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte("source: {dsn: x}\ntrail: {dir: /t}\nsinks:\n  - name: d\n    kind: dynamodb\n    " + tc.sink + "\n"))
			require.ErrorContains(t, err, tc.want)
		})
	}
}
