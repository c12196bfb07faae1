package config

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestShippedExampleParses keeps configs/cdcd.yaml valid.
func TestShippedExampleParses(t *testing.T) {
	t.Setenv("CDC_SOURCE_PASSWORD", "secret")
	raw, err := os.ReadFile("../../configs/cdcd.yaml")
	require.NoError(t, err)
	f, err := Parse(raw)
	require.NoError(t, err)
	require.Len(t, f.Sinks, 1)
	require.Equal(t, "eu-west-1", f.Sinks[0].IAM.Region)
	require.Equal(t, 10000, f.Sinks[0].Batch.MaxRows)
	sc := f.ServiceConfig(nil)
	require.Equal(t, "127.0.0.1:8432", sc.Listen)
	require.Equal(t, int64(1<<30), sc.Guard.WarnBytes)
	require.Equal(t, int64(4<<30), sc.Guard.AlertBytes)
	require.Equal(t, "http://127.0.0.1:8432/status", f.StatusURL())
}
