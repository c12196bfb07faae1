package config

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestShippedCutoverExampleParses keeps the commented cutover section of
// configs/cdcd.yaml valid once uncommented, and checks both directions.
func TestShippedCutoverExampleParses(t *testing.T) {
	raw, err := os.ReadFile("../../configs/cdcd.yaml")
	require.NoError(t, err)
	var block []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l == "# cutover:" || (len(block) > 0 && strings.HasPrefix(l, "#   ")) {
			block = append(block, strings.TrimPrefix(l, "# "))
		} else if len(block) > 0 {
			break
		}
	}
	require.NotEmpty(t, block)
	f, err := Parse([]byte(strings.Join(block, "\n") + `
source: {dsn: "postgres://blue/app"}
trail: {dir: /t}
sinks: [{name: green, kind: postgres, dsn: "postgres://green/app", password: pw}]
`))
	require.NoError(t, err)
	c, err := f.CutoverConfig(false)
	require.NoError(t, err)
	require.Equal(t, "postgres://blue/app", c.SourceDSN)
	require.Equal(t, "green", c.Targets[0].Name)
	require.Equal(t, "/etc/cdcd/flip-to-green.sh", c.Hook)
	require.Equal(t, "counts", c.Verify)
	require.Equal(t, 30*time.Second, c.MaxTransactionAge)
	require.Empty(t, c.RollbackSlot, "rollback is off")

	_, err = f.CutoverConfig(true)
	require.ErrorContains(t, err, "cutover.rollback")
	f.Cutover.Rollback = true
	b, err := f.CutoverConfig(true)
	require.NoError(t, err)
	require.Equal(t, "postgres://:pw@green/app", b.SourceDSN)
	require.Equal(t, "postgres://blue/app?default_transaction_read_only=off", b.Targets[0].DSN)
	require.Equal(t, "/etc/cdcd/flip-to-blue.sh", b.Hook)
	require.True(t, b.UnfenceTargets)

	r, err := f.RollbackFile()
	require.NoError(t, err)
	require.Equal(t, "postgres://:pw@green/app", r.Source.DSN)
	require.Equal(t, "cdcd_rollback", r.Source.Slot)
	require.Equal(t, "/var/lib/cdcd/trail-rollback", r.Trail.Dir)
	require.Equal(t, []string{"cdcd.*"}, r.Tables.Exclude)

	f.Cutover.Verify = "sometimes"
	_, err = f.CutoverConfig(false)
	require.ErrorContains(t, err, `cutover.verify`)
}

func TestWritable(t *testing.T) {
	require.Equal(t, "host=b dbname=app default_transaction_read_only=off", Writable("host=b dbname=app"))
	require.Equal(t, "postgres://b/app?sslmode=require&default_transaction_read_only=off", Writable("postgres://b/app?sslmode=require"))
}
