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
}
