package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestServiceSections(t *testing.T) {
	f, err := Parse([]byte("source: {dsn: x}\ntrail: {dir: /t}\nhttp: {listen: 'off', ready_max_lag: 5s, ready_max_lag_bytes: 1MiB}\nwal_guard: {interval: 1s, warn_bytes: 1MiB, alert_bytes: 2MiB}\n"))
	require.NoError(t, err)
	sc := f.ServiceConfig(nil)
	require.Equal(t, 5*time.Second, sc.ReadyMaxLag)
	require.Equal(t, int64(1<<20), sc.ReadyMaxLagBytes)
	require.Equal(t, time.Second, sc.Guard.Interval)
	require.Equal(t, "", f.StatusURL(), "http off: status reads the files")

	f, err = Parse([]byte("source: {dsn: x}\ntrail: {dir: /t}\n"))
	require.NoError(t, err)
	require.Equal(t, "http://127.0.0.1:8432/status", f.StatusURL(), "the default endpoint")
	f.HTTP.Listen = ":9000"
	require.Equal(t, "http://127.0.0.1:9000/status", f.StatusURL())

	_, err = Parse([]byte("source: {dsn: x}\ntrail: {dir: /t}\nwal_guard: {warn_bytes: 2GiB, alert_bytes: 1GiB}\n"))
	require.ErrorContains(t, err, "wal_guard.alert_bytes (line 3): 1073741824 is below warn_bytes")
	_, err = Parse([]byte("source: {dsn: x}\ntrail: {dir: /t}\nhttp: {listen: x, ready_lag: 1s}\n"))
	require.ErrorContains(t, err, `http.ready_lag (line 3): unknown key "ready_lag"`)
}
