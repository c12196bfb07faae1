package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/verify"
)

// TestVerifyCommand runs `cdcd verify` through the built binary with no
// daemon running: exit 0 and "all match" on identical tables, exit 1 with
// the differing key named on a difference, --json for machines, no
// password in any output.
func TestVerifyCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the cdcd binary and starts servers")
	}
	const pw = "s3cr3t-pw"
	src := pgtest.StartT(t, pgtest.Options{Name: "blue", Password: pw})
	dst := pgtest.StartT(t, pgtest.Options{Name: "green", Password: pw})
	for _, c := range []*pgtest.Cluster{src, dst} {
		c.ExecT(t, "postgres", `CREATE TABLE orders (id int PRIMARY KEY, note text)`,
			`INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 1000) g`)
	}
	bin := pgtest.BuildCdcdT(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "cdcd.yaml")
	require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`source:
  dsn: "postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable"
  password: ${CDCD_T_PW}
trail: { dir: %q }
sinks:
  - { name: green, kind: postgres, dsn: "postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", password: "${CDCD_T_PW}" }
http: { listen: "127.0.0.1:1" }
`, src.Port, filepath.Join(dir, "trail"), dst.Port)), 0o600))
	cdcd := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "CDCD_T_PW="+pw)
		out, err := cmd.CombinedOutput()
		require.NotContains(t, string(out), pw, "no password in the output")
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return string(out), exit.ExitCode()
		}
		require.NoError(t, err, "%s", out)
		return string(out), 0
	}
	out, code := cdcd("verify", "--config", path)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "no running cdcd answers")
	require.Contains(t, out, "public.orders")
	require.Contains(t, out, "all match")

	dst.ExecT(t, "postgres", `UPDATE orders SET note = 'x' WHERE id = 42`)
	out, code = cdcd("verify", "--config", path)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "changed: (id)=(42)")
	require.Contains(t, out, "cdcd: verify: tables differ")

	cmd := exec.Command(bin, "verify", "--config", path, "--json")
	cmd.Env = append(os.Environ(), "CDCD_T_PW="+pw)
	stdout, err := cmd.Output()
	require.Error(t, err)
	var res verify.Result
	require.NoError(t, json.Unmarshal(stdout, &res), string(stdout))
	require.False(t, res.Match)
	require.Equal(t, []string{"(id)=(42)"}, res.Targets[0].Tables[0].Changed)

	out, code = cdcd("verify", "--config", path, "--repair")
	require.Equal(t, 1, code, out)
	out, code = cdcd("verify", "--config", path)
	require.Equal(t, 0, code, out)

	src.ExecT(t, "postgres", `CREATE TABLE only_blue (id int PRIMARY KEY)`)
	out, code = cdcd("verify", "--config", path, "--tables", "only_blue")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "table public.only_blue does not exist on target green")
}
