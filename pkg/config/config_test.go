package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

const example = `
source:
  kind: postgres
  dsn: "postgres://cdc:${CDCD_TEST_PW}@127.0.0.1:5433/app?sslmode=disable"
  slot: cdcd
  publication: cdcd
  create: true
  heartbeat: 10s
trail:
  dir: /var/lib/cdcd/trail
  segment_bytes: 64MiB
`

func TestParseExample(t *testing.T) {
	t.Setenv("CDCD_TEST_PW", "s3cret")
	f, err := Parse([]byte(example))
	require.NoError(t, err)
	require.Equal(t, "postgres://cdc:s3cret@127.0.0.1:5433/app?sslmode=disable", f.Source.DSN)
	c := f.CaptureConfig(nil)
	require.Equal(t, 10*time.Second, c.Source.Heartbeat)
	require.True(t, c.Source.Create)
	require.Equal(t, int64(64<<20), c.Trail.SegmentBytes)
	require.Equal(t, "/var/lib/cdcd/trail", c.TrailDir)
}

func TestGroupCommit(t *testing.T) {
	t.Setenv("CDCD_TEST_PW", "s3cret")
	f, err := Parse([]byte(example + "capture:\n  group_commit_delay: 3ms\n  group_commit_interval: 7ms\n  group_commit_bytes: 1MiB\n"))
	require.NoError(t, err)
	c := f.CaptureConfig(nil)
	require.Equal(t, 3*time.Millisecond, c.GroupCommitDelay)
	require.Equal(t, 7*time.Millisecond, c.GroupCommitInterval)
	require.Equal(t, int64(1<<20), c.GroupCommitBytes)
}

func TestStreaming(t *testing.T) {
	f, err := Parse([]byte("source: {dsn: x, streaming: off}\ntrail: {dir: /tmp/x}\n"))
	require.NoError(t, err)
	require.Equal(t, "off", f.CaptureConfig(nil).Source.Streaming)
	f, err = Parse([]byte("source: {dsn: x}\ntrail: {dir: /tmp/x}\ncapture: {ack: applied}\n"))
	require.NoError(t, err)
	require.True(t, f.PipelineConfig(nil).AckApplied)
}

func TestHeartbeatOff(t *testing.T) {
	f, err := Parse([]byte("source: {dsn: x, heartbeat: off}\ntrail: {dir: /tmp/x}\n"))
	require.NoError(t, err)
	require.Less(t, f.CaptureConfig(nil).Source.Heartbeat, time.Duration(0))
}

func TestParseErrorsNameTheKeyAndLine(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown key", "source: {dsn: x, dns: y}\ntrail: {dir: /t}\n", `source.dns (line 1): unknown key "dns"`},
		{"unknown nested key", "source:\n  dsn: x\ntrail:\n  dir: /t\nsinks:\n  - name: pg\n    kind: postgres\n    dsn: x\n    batch:\n      max_rowz: 3\n",
			`sinks[pg].batch.max_rowz (line 10): unknown key "max_rowz"`},
		{"missing dsn", "trail: {dir: /t}\n", "source.dsn: is required"},
		{"missing dir", "source: {dsn: x}\n", "trail.dir: is required"},
		{"bad duration", "source:\n  dsn: x\n  heartbeat: soon\ntrail: {dir: /t}\n", `source.heartbeat (line 3): invalid duration "soon"`},
		{"duration overflow", "source: {dsn: x, heartbeat: 100000000h}\ntrail: {dir: /t}\n", `source.heartbeat (line 1): duration "100000000h" is too long`},
		{"bad size", "source: {dsn: x}\ntrail:\n  dir: /t\n  segment_bytes: lots\n", `trail.segment_bytes (line 4): invalid size "lots"`},
		{"size fraction", "source: {dsn: x}\ntrail:\n  dir: /t\n  segment_bytes: 1.5GiB\n", `trail.segment_bytes (line 4): size "1.5GiB" is not a whole number`},
		{"size overflow", "source: {dsn: x}\ntrail:\n  dir: /t\n  segment_bytes: 16777216TiB\n", `trail.segment_bytes (line 4): size "16777216TiB" is too large`},
		{"size negative", "source: {dsn: x}\ntrail:\n  dir: /t\n  segment_bytes: -1MiB\n", `trail.segment_bytes (line 4): size "-1MiB" must not be negative`},
		{"tiny segment", "source: {dsn: x}\ntrail: {dir: /t, segment_bytes: 1KiB}\n", "trail.segment_bytes (line 2): 1024 bytes is too small"},
		{"unset env", "source: {dsn: '${CDCD_NOPE_UNSET}'}\ntrail: {dir: /t}\n", "source.dsn (line 1): environment variable CDCD_NOPE_UNSET is not set"},
		{"missing secret file", "source: {dsn: x, password: '${file:/nonexistent/pw}'}\ntrail: {dir: /t}\n", "source.password (line 1): read secret file referenced as ${file:/nonexistent/pw}"},
		{"bad streaming", "source:\n  dsn: x\n  streaming: yes\ntrail: {dir: /t}\n", `source.streaming (line 3): "yes" is not one of on, off, auto`},
		{"bad ack", "source: {dsn: x}\ntrail: {dir: /t}\ncapture: {ack: synced}\n", `capture.ack (line 3): "synced" is not one of durable, applied`},
		{"bad kind", "source: {kind: mysql, dsn: x}\ntrail: {dir: /t}\n", `source.kind (line 1): "mysql" is not supported`},
		{"sink by name", "source: {dsn: x}\ntrail: {dir: /t}\nsinks:\n  - {name: a, kind: stdout}\n  - name: ddb\n    kind: postgres\n", "sinks[ddb].dsn: is required for a postgres sink"},
		{"sink bad duration by name", "source: {dsn: x}\ntrail: {dir: /t}\nsinks:\n  - name: pg\n    kind: postgres\n    dsn: x\n    batch: {max_delay: 3q}\n", `sinks[pg].batch.max_delay (line 7): invalid duration "3q"`},
		{"sink without name", "source: {dsn: x}\ntrail: {dir: /t}\nsinks:\n  - kind: stdout\n", "sinks[0].name: is required"},
		{"kafka batch overflow", "source: {dsn: x}\ntrail: {dir: /t}\nsinks:\n  - name: k\n    kind: kafka\n    brokers: [b:9092]\n    kafka: {batch_max_bytes: 4GiB}\n", "sinks[k].kafka.batch_max_bytes (line 7): 4294967296 bytes is too large"},
		{"wrong type", "source: {dsn: x}\ntrail: {dir: [a]}\n", "trail.dir (line 2)"},
		{"bad yaml", "source: [\n", "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "\n", "one line")
			var cfgErr *Error
			require.ErrorAs(t, err, &cfgErr)
		})
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"16MiB": 16 << 20, "64MB": 64e6, "512": 512, "1GiB": 1 << 30, "3 KiB": 3 << 10, "8388607TiB": 8388607 << 40} {
		got, err := ParseByteSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"1.5GiB", "16777216TiB", "9223372036854775808", "1e3", "-1", "", "MiB", "12XB"} {
		_, err := ParseByteSize(in)
		require.Error(t, err, in)
	}
}

// nasty holds every byte the issue names: #, quotes, backslash, @, /, a
// space and a newline.
const nasty = "p#w'd\"x\\y@z/ q\nr"

func TestSecretsExpandInsideValuesOnly(t *testing.T) {
	t.Setenv("CDCD_T_PW", nasty)
	// A value that looks like YAML must not add a key.
	t.Setenv("CDCD_T_INJECT", "x\ntrail: {dir: /evil}\nsinks: [{name: evil, kind: stdout}]")
	pwFile := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pwFile, []byte(nasty+"\n"), 0o600))
	doc := fmt.Sprintf(`source:
  dsn: postgres://cdc@127.0.0.1:5432/app # ${NOT_SET_IN_A_COMMENT}
  password: ${CDCD_T_PW}
  primary_dsn: host=127.0.0.1 user=cdc dbname=app
  primary_password: ${file:%s}
  slot: "${CDCD_T_INJECT}"
trail: {dir: /t}
sinks:
  - name: pg
    kind: postgres
    dsn: "postgres://u:old@127.0.0.1/db?sslmode=verify-full"
    password: '${file:%s}'
`, pwFile, pwFile)
	f, err := Parse([]byte(doc))
	require.NoError(t, err)
	require.Equal(t, os.Getenv("CDCD_T_INJECT"), f.Source.Slot, "kept byte-exact as one value")
	require.Equal(t, "/t", f.Trail.Dir, "no key injected")
	require.Len(t, f.Sinks, 1)
	for _, conn := range []string{f.Source.DSN, f.Source.PrimaryDSN, f.Sinks[0].DSN} {
		c, err := pgconn.ParseConfig(conn)
		require.NoError(t, err)
		require.Equal(t, nasty, c.Password, conn)
	}
	c, err := pgconn.ParseConfig(f.Sinks[0].DSN)
	require.NoError(t, err)
	require.Equal(t, "u", c.User)
	require.Equal(t, "db", c.Database)
	require.Equal(t, "verify-full", sslmode(t, f.Sinks[0].DSN))
}

func sslmode(t *testing.T, conn string) string {
	u, err := url.Parse(conn)
	require.NoError(t, err)
	return u.Query().Get("sslmode")
}

func TestEnvIsNotExpandedInKeysOrTwice(t *testing.T) {
	t.Setenv("CDCD_T_TWICE", "${CDCD_T_OTHER}")
	f, err := Parse([]byte("source: {dsn: x, slot: '${CDCD_T_TWICE}'}\ntrail: {dir: /t}\n"))
	require.NoError(t, err)
	require.Equal(t, "${CDCD_T_OTHER}", f.Source.Slot)
	_, err = Parse([]byte("source: {dsn: x, '${CDCD_T_TWICE}': y}\ntrail: {dir: /t}\n"))
	require.ErrorContains(t, err, "unknown key")
}

func TestEnvInCommentsIsIgnored(t *testing.T) {
	t.Setenv("CDCD_T_DSN_PART", "y")
	f, err := Parse([]byte("# uses ${NOT_SET_ANYWHERE}\nsource: {dsn: \"x#${CDCD_T_DSN_PART}\"} # ${ALSO_NOT_SET}\ntrail: {dir: /t}\n"))
	require.NoError(t, err)
	require.Equal(t, "x#y", f.Source.DSN)
}

// TestForwardStreamed: auto forwards streamed transactions only when every
// sink keeps a transaction invisible until its end and nothing is dropped
// by commit position; off, streaming off or a wrong value turn it off.
func TestForwardStreamed(t *testing.T) {
	pg := "  - name: pg\n    kind: postgres\n    dsn: postgres://t/db\n"
	for _, tc := range []struct {
		name, doc string
		want      bool
	}{
		{"postgres sink", "source: {dsn: x}\n", true},
		{"citus", "source: {dsn: x}\n" + "FLAVOR    flavor: citus\n", true},
		{"off", "source: {dsn: x, forward_streamed: off}\n", false},
		{"streaming off", "source: {dsn: x, streaming: off}\n", false},
		{"snapshot", "source: {dsn: x}\nsnapshot: {mode: initial}\n", false},
		{"snapshot never", "source: {dsn: x}\nsnapshot: {mode: never}\n", true},
		{"aurora dsql", "source: {dsn: x}\n" + "FLAVOR    flavor: aurora-dsql\n", false},
		{"and kafka", "source: {dsn: x}\n" + "EXTRA  - name: k\n    kind: kafka\n    brokers: [b:9092]\n", false},
		{"and stdout", "source: {dsn: x}\n" + "EXTRA  - name: s\n    kind: stdout\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head, flavor, extra := tc.doc, "", ""
			if i := strings.Index(head, "FLAVOR"); i >= 0 {
				head, flavor = head[:i], head[i+len("FLAVOR"):]
			}
			if i := strings.Index(head, "EXTRA"); i >= 0 {
				head, extra = head[:i], head[i+len("EXTRA"):]
			}
			f, err := Parse([]byte(head + "trail: {dir: /t}\nsinks:\n" + pg + flavor + extra))
			require.NoError(t, err)
			require.Equal(t, tc.want, f.CaptureConfig(nil).Source.ForwardStreamed)
		})
	}
	_, err := Parse([]byte("source: {dsn: x, forward_streamed: on}\ntrail: {dir: /t}\n"))
	require.ErrorContains(t, err, `source.forward_streamed`)
	require.ErrorContains(t, err, `"on" is not one of auto, off`)
}
