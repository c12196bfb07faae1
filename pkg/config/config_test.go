package config

import (
	"testing"
	"time"

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
	c := f.CaptureConfig()
	require.Equal(t, 10*time.Second, c.Source.Heartbeat)
	require.True(t, c.Source.Create)
	require.Equal(t, int64(64<<20), c.Trail.SegmentBytes)
	require.Equal(t, "/var/lib/cdcd/trail", c.TrailDir)
}

func TestHeartbeatOff(t *testing.T) {
	f, err := Parse([]byte("source: {dsn: x, heartbeat: off}\ntrail: {dir: /tmp/x}\n"))
	require.NoError(t, err)
	require.Less(t, f.CaptureConfig().Source.Heartbeat, time.Duration(0))
}

func TestParseErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown key", "source: {dsn: x, dns: y}\ntrail: {dir: /t}\n", `unknown field "dns"`},
		{"missing dsn", "trail: {dir: /t}\n", "source.dsn is required"},
		{"missing dir", "source: {dsn: x}\n", "trail.dir is required"},
		{"bad duration", "source: {dsn: x, heartbeat: soon}\ntrail: {dir: /t}\n", `invalid duration "soon"`},
		{"bad size", "source: {dsn: x}\ntrail: {dir: /t, segment_bytes: lots}\n", `invalid size "lots"`},
		{"tiny segment", "source: {dsn: x}\ntrail: {dir: /t, segment_bytes: 1KiB}\n", "trail.segment_bytes 1024 is too small"},
		{"unset env", "source: {dsn: '${CDCD_NOPE_UNSET}'}\ntrail: {dir: /t}\n", "CDCD_NOPE_UNSET is not set"},
		{"bad kind", "source: {kind: mysql, dsn: x}\ntrail: {dir: /t}\n", `source.kind "mysql"`},
		{"bad yaml", "source: [\n", "["},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"16MiB": 16 << 20, "64MB": 64e6, "512": 512, "1GiB": 1 << 30, "3 KiB": 3 << 10} {
		got, err := ParseByteSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
}

func TestEnvInCommentsIsIgnored(t *testing.T) {
	f, err := Parse([]byte("# uses ${NOT_SET_ANYWHERE}\nsource: {dsn: \"x#${CDCD_T_DSN_PART}\"} # ${ALSO_NOT_SET}\ntrail: {dir: /t}\n"))
	require.Error(t, err, "inside quotes the # is not a comment")
	t.Setenv("CDCD_T_DSN_PART", "y")
	f, err = Parse([]byte("# uses ${NOT_SET_ANYWHERE}\nsource: {dsn: \"x#${CDCD_T_DSN_PART}\"} # ${ALSO_NOT_SET}\ntrail: {dir: /t}\n"))
	require.NoError(t, err)
	require.Equal(t, "x#y", f.Source.DSN)
}
