package config

import (
	"os"
	"strings"
	"testing"
	"time"

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

// TestShippedTriggerExampleParses keeps the commented kind-trigger source
// in configs/cdcd.yaml valid once uncommented.
func TestShippedTriggerExampleParses(t *testing.T) {
	t.Setenv("CDC_SOURCE_PASSWORD", "secret")
	raw, err := os.ReadFile("../../configs/cdcd.yaml")
	require.NoError(t, err)
	var block []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l == "# source:" || (len(block) > 0 && strings.HasPrefix(l, "#   ")) {
			block = append(block, strings.TrimPrefix(l, "# "))
		} else if len(block) > 0 {
			break
		}
	}
	require.NotEmpty(t, block)
	f, err := Parse([]byte(strings.Join(block, "\n") + "\ntrail: {dir: /t}\n"))
	require.NoError(t, err)
	require.Equal(t, KindTrigger, f.Source.Kind)
	require.Equal(t, 200*time.Millisecond, f.TriggerConfig(nil).PollInterval)
}
