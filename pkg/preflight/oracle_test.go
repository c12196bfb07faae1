package preflight

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/sink/oracle"
)

// An Oracle sink on a host without the Instant Client fails `cdcd check`
// with one line saying what to install (with a client: the connection to a
// closed port fails instead). The password never shows.
func TestOracleSinkCheck(t *testing.T) {
	c := &checker{cfg: Config{Timeout: 2 * time.Second}}
	c.sink(context.Background(), Sink{Name: "ora", Kind: "oracle", Oracle: &oracle.Config{Name: "ora",
		DSN: `user=cdc connectString="127.0.0.1:9/FREEPDB1"`, Password: "hunter22"}}, []table{{"public", "orders"}})
	require.NotEmpty(t, c.out)
	require.True(t, Failed(c.out))
	var buf bytes.Buffer
	require.NoError(t, WriteText(&buf, c.out))
	require.NotContains(t, buf.String(), "hunter22")
	if c.out[0].Check == "sink.ora.client" {
		require.Equal(t, Fail, c.out[0].Status)
		require.Len(t, c.out, 1)
		line := strings.Split(buf.String(), "\n")[0]
		require.Contains(t, line, "FAIL  sink.ora.client  the Oracle Instant Client (libclntsh.so) is not installed or not found — fix: install Oracle Instant Client 19c or later")
		t.Log(line)
		return
	}
	require.Equal(t, "sink.ora.connect", c.out[1].Check)
	require.Equal(t, Fail, c.out[1].Status)
}
