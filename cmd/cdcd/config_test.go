package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// TestBadConfigExitsTwo: each bad size, duration or unknown key stops
// `cdcd run` before it connects anywhere, with one line naming the key and
// its line, and exit code 2.
func TestBadConfigExitsTwo(t *testing.T) {
	bin := pgtest.BuildCdcdT(t)
	const good = "source:\n  dsn: postgres://cdc@127.0.0.1:1/app\ntrail:\n  dir: /nonexistent/trail\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"size fraction", good + "  segment_bytes: 1.5GiB\n", `trail.segment_bytes (line 5): size "1.5GiB" is not a whole number`},
		{"size overflow", good + "  segment_bytes: 16777216TiB\n", `trail.segment_bytes (line 5): size "16777216TiB" is too large`},
		{"bad duration", good + "capture:\n  group_commit_delay: 1 ms\n", `capture.group_commit_delay (line 6): invalid duration "1 ms"`},
		{"unknown key", good + "  segment_byte: 1MiB\n", `trail.segment_byte (line 5): unknown key "segment_byte"`},
		{"unset variable", good + "sinks:\n  - name: pg\n    kind: postgres\n    dsn: x\n    password: ${CDCD_T_UNSET_PW}\n",
			"sinks[pg].password (line 9): environment variable CDCD_T_UNSET_PW is not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cdcd.yaml")
			require.NoError(t, os.WriteFile(path, []byte(tc.yaml), 0o600))
			cmd := exec.Command(bin, "run", "--config", path)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "%v: %s", err, out)
			require.Equal(t, 2, exit.ExitCode(), "%s", out)
			require.Equal(t, 1, strings.Count(string(out), "\n"), "one line: %s", out)
			require.Contains(t, string(out), path+": "+tc.want)
		})
	}
}
