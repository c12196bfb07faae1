package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTriggerKind(t *testing.T) {
	f, err := Parse([]byte(`source:
  kind: trigger
  dsn: postgres://cdc@127.0.0.1:5432/app
  password: pw
  create: true
  allow_keyless: true
trail: {dir: /t}
tables:
  include: ["public.*"]
  exclude: ["public.audit_*"]
`))
	require.NoError(t, err)
	tc := f.TriggerConfig(nil)
	require.Equal(t, 200*time.Millisecond, tc.PollInterval, "default")
	require.True(t, tc.Create)
	require.True(t, tc.AllowKeyless)
	require.Equal(t, "/t", tc.StateDir)
	require.Contains(t, tc.DSN, "pw", "the password key applies to the dsn")
	require.True(t, tc.Include("public", "orders"))
	require.False(t, tc.Include("public", "audit_2024"))
	require.False(t, tc.Include("app", "orders"))
	require.NotNil(t, f.CaptureConfig(nil).Open, "kind trigger opens the trigger source")
	pc := f.PipelineConfig(nil)
	require.NotNil(t, pc.Trigger, "the pipeline wires the trigger source (and its snapshots)")
	require.Nil(t, pc.Capture.Open)
	require.Equal(t, tc.DSN, pc.Trigger.DSN)
	pf := f.PreflightConfig()
	require.NotNil(t, pf.Trigger)
	require.True(t, pf.Trigger.AllowKeyless)
	require.Empty(t, f.DiskStatusConfig().SourceDSN, "no slot to read")

	f, err = Parse([]byte("source: {kind: trigger, dsn: x, poll_interval: 50ms}\ntrail: {dir: /t}\nwal_guard: {warn_bytes: 2GiB, alert_bytes: 8GiB}\n"))
	require.NoError(t, err)
	require.Equal(t, int64(2<<30), f.PreflightConfig().Trigger.WarnBytes, "the WAL guard's thresholds apply to the change log")
	require.Equal(t, int64(8<<30), f.PreflightConfig().Trigger.AlertBytes)
	require.Equal(t, 50*time.Millisecond, f.TriggerConfig(nil).PollInterval)
	require.False(t, f.TriggerConfig(nil).AllowKeyless, "default")

	f, err = Parse([]byte("source: {dsn: x}\ntrail: {dir: /t}\n"))
	require.NoError(t, err)
	require.Nil(t, f.CaptureConfig(nil).Open, "kind postgres uses the pgoutput source")
	require.Nil(t, f.PipelineConfig(nil).Trigger)
	require.Nil(t, f.PreflightConfig().Trigger)
}

func TestTriggerKindErrors(t *testing.T) {
	const trail = "trail: {dir: /t}\n"
	for _, tc := range []struct{ name, doc, want string }{
		{"slot", "source:\n  kind: trigger\n  dsn: x\n  slot: cdcd\n" + trail, "source.slot (line 4): applies to kind postgres only"},
		{"publication", "source:\n  kind: trigger\n  dsn: x\n  publication: cdcd\n" + trail, "source.publication (line 4): applies to kind postgres only"},
		{"primary_dsn", "source:\n  kind: trigger\n  dsn: x\n  primary_dsn: y\n" + trail, "source.primary_dsn (line 4): applies to kind postgres only"},
		{"heartbeat", "source:\n  kind: trigger\n  dsn: x\n  heartbeat: 10s\n" + trail, "source.heartbeat (line 4): applies to kind postgres only"},
		{"status_interval", "source:\n  kind: trigger\n  dsn: x\n  status_interval: 10s\n" + trail, "source.status_interval (line 4): applies to kind postgres only"},
		{"poll_interval for postgres", "source:\n  dsn: x\n  poll_interval: 1s\n" + trail, "source.poll_interval (line 3): applies to kind trigger only"},
		{"allow_keyless for postgres", "source:\n  kind: postgres\n  dsn: x\n  allow_keyless: true\n" + trail, "source.allow_keyless (line 4): applies to kind trigger only"},
		{"poll_interval off", "source:\n  kind: trigger\n  dsn: x\n  poll_interval: off\n" + trail, "source.poll_interval (line 4): cannot be off"},
		{"bad poll_interval", "source:\n  kind: trigger\n  dsn: x\n  poll_interval: often\n" + trail, `source.poll_interval (line 4): invalid duration "often"`},
		{"row filter", "source: {kind: trigger, dsn: x}\n" + trail + "mappings:\n  - from: public.a\n    where: \"x > 1\"\n",
			"mappings[0].where (line 5): applies to kind postgres only"},
		{"kind", "source: {kind: mysql, dsn: x}\n" + trail, `source.kind (line 1): "mysql" is not supported: use postgres or trigger`},
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
	_, err := Parse([]byte("source: {kind: trigger, dsn: x}\n" + trail + "snapshot: {mode: never}\n"))
	require.NoError(t, err, "snapshot.mode never is fine")
}
