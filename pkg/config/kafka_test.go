package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestKafkaMinBatchDelay: unset leaves the sink's default (zero here), a
// duration passes through, off becomes negative (no pacing).
func TestKafkaMinBatchDelay(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want time.Duration
	}{
		{"", 0},
		{"kafka: {min_batch_delay: 20ms}", 20 * time.Millisecond},
		{"kafka: {min_batch_delay: off}", -1},
	} {
		f, err := Parse([]byte("source: {dsn: x}\ntrail: {dir: /t}\nsinks:\n  - name: k\n    kind: kafka\n    brokers: [b:9092]\n    " + c.yaml + "\n"))
		require.NoError(t, err, c.yaml)
		kc := kafkaConfig(f.Sinks[0])
		require.Equal(t, c.want, kc.MinBatchDelay, c.yaml)
		require.NoError(t, kc.Validate())
	}
}
