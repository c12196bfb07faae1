package oracle_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/internal/pipetest"
)

// A whole pipeline from a YAML file with an Oracle sink, on a host without
// the Oracle Instant Client (these machines): capture runs, and the sink
// stops the pipeline with one line saying what to install, never the
// password. (With a client installed, the closed port fails the first
// connection instead, which stops it the same way.)
func TestPipelineWithoutInstantClient(t *testing.T) {
	src := pgtest.StartT(t, pgtest.Options{Name: "oraclerun"})
	src.ExecT(t, "postgres", `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	doc := fmt.Sprintf(`
source:
  dsn: %q
  create: true
trail:
  dir: %q
sinks:
  - name: ora
    kind: oracle
    dsn: 'user=cdc connectString="127.0.0.1:9/FREEPDB1"'
    password: "s3cr3t-pw"
`, src.DSN("postgres"), t.TempDir())
	r := pipetest.Start(t, doc, slog.New(slog.DiscardHandler))
	var err error
	select {
	case err = <-r.Done:
		r.Done <- err
	case <-time.After(2 * time.Minute):
		t.Fatal("the pipeline did not stop on a sink that cannot connect")
	}
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cr3t-pw")
	require.NotContains(t, err.Error(), "\n")
	if strings.Contains(err.Error(), "Instant Client") {
		require.Contains(t, err.Error(), `sink ora: oracle sink "ora": the Oracle Instant Client (libclntsh.so) is not installed or not found: install Oracle Instant Client 19c or later`)
	}
	t.Log(err)
}
