package config

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/sink/oracle"
)

const oracleDoc = `
source: {dsn: "postgres://cdc@127.0.0.1/app"}
trail: {dir: /t}
sinks:
  - name: ora
    kind: oracle
    dsn: 'user=cdc connectString="127.0.0.1:9/FREEPDB1"'
    password: ${CDCD_TEST_ORA_PW}
    checkpoint_table: cdcd_ck
    oracle:
      schema: app
      case: preserve
      empty_string: " "
      lib_dir: /opt/oracle/instantclient_23_5
      lob_inline_bytes: 8000
`

func TestOracleSink(t *testing.T) {
	t.Setenv("CDCD_TEST_ORA_PW", "pa ss#word")
	f, err := Parse([]byte(oracleDoc))
	require.NoError(t, err)
	require.Equal(t, oracle.Config{
		Name: "ora", DSN: `user=cdc connectString="127.0.0.1:9/FREEPDB1"`, Password: "pa ss#word",
		LibDir: "/opt/oracle/instantclient_23_5", Schema: "app", CheckpointTable: "cdcd_ck", Case: oracle.CasePreserve,
		EmptyString: " ", LOBInlineBytes: 8000,
	}, OracleConfig(f.Sinks[0]))

	// The sink opens through godror; on a machine without the Instant
	// Client that is one line saying what to install, never the password.
	pc := f.PipelineConfig(slog.New(slog.DiscardHandler))
	require.Len(t, pc.Sinks, 1)
	s, err := pc.Sinks[0].Open(context.Background())
	if err == nil {
		s.Close(context.Background())
		t.Fatal("opened an Oracle sink on a closed port: want an error")
	}
	require.NotContains(t, err.Error(), "pa ss#word")
	require.NotContains(t, err.Error(), "\n")
	if errors.Is(err, oracle.ErrNoClient) {
		require.False(t, sink.IsRetriable(err))
		require.Contains(t, err.Error(), "install Oracle Instant Client")
	}

	// cdcd status, with cdcd down, reads the position from Oracle.
	ds := f.DiskStatusConfig()
	require.Len(t, ds.Sinks, 1)
	require.NotNil(t, ds.Sinks[0].Position)
	_, _, err = ds.Sinks[0].Position(context.Background())
	require.Error(t, err)
	require.NotContains(t, err.Error(), "pa ss#word")

	pre := f.PreflightConfig()
	require.Len(t, pre.Sinks, 1)
	require.NotNil(t, pre.Sinks[0].Oracle)
	require.Equal(t, "pa ss#word", pre.Sinks[0].Oracle.Password)
}

func TestOracleSinkErrors(t *testing.T) {
	base := "source: {dsn: x}\ntrail: {dir: /t}\nsinks:\n  - name: ora\n    kind: oracle\n"
	for _, tc := range []struct{ name, doc, want string }{
		{"missing dsn", base, "sinks[ora].dsn: is required for an oracle sink"},
		{"bad case", base + "    dsn: x\n    oracle: {case: lower}\n", `sinks[ora].oracle.case (line 7): "lower": use upper (the default) or preserve`},
		{"bad lob size", base + "    dsn: x\n    oracle: {lob_inline_bytes: 40000}\n", "sinks[ora].oracle.lob_inline_bytes (line 7): 40000: want 1 to 32767"},
		{"oracle keys on another kind", "source: {dsn: x}\ntrail: {dir: /t}\nsinks:\n  - name: pg\n    kind: postgres\n    dsn: x\n    oracle: {schema: app}\n",
			"sinks[pg].oracle (line 7): is for oracle sinks, this one is postgres"},
		{"unknown key", base + "    dsn: x\n    oracle: {schema: app, cas: upper}\n", `unknown key "cas"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.False(t, strings.Contains(err.Error(), "\n"), "one line")
		})
	}
}

// TestShippedOracleExampleParses keeps the commented oracle sink in
// configs/cdcd.yaml valid once uncommented.
func TestShippedOracleExampleParses(t *testing.T) {
	t.Setenv("ORA_PASSWORD", "secret")
	raw, err := os.ReadFile("../../configs/cdcd.yaml")
	require.NoError(t, err)
	var block []string
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "  # - name: ora") || (len(block) > 0 && strings.HasPrefix(l, "  #   ")) {
			block = append(block, "  "+strings.TrimPrefix(l, "  # "))
		} else if len(block) > 0 {
			break
		}
	}
	require.NotEmpty(t, block)
	f, err := Parse([]byte("source: {dsn: x}\ntrail: {dir: /t}\nsinks:\n" + strings.Join(block, "\n") + "\n"))
	require.NoError(t, err)
	oc := OracleConfig(f.Sinks[0])
	require.Equal(t, "secret", oc.Password)
	require.Equal(t, oracle.CaseUpper, oc.Case)
	require.Equal(t, "APP", oc.Schema)
}
