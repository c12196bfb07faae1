package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// TestTriggerInstallUninstall runs `cdcd trigger install` and `uninstall`
// through the built binary: a table without a key and a role without the
// right to create triggers are refused with one line and a non-zero exit,
// install is idempotent, and uninstall leaves nothing behind. No output
// holds a password.
func TestTriggerInstallUninstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the cdcd binary and starts a server")
	}
	const pw = "s3cr3t-pw"
	src := pgtest.StartT(t, pgtest.Options{Name: "source", Password: pw})
	src.ExecT(t, "postgres",
		`CREATE TABLE orders (id int PRIMARY KEY, note text)`,
		`CREATE TABLE lines (order_id int, n int, qty int, PRIMARY KEY (order_id, n))`,
		`CREATE TABLE "no key" (a int, b text)`,
		`CREATE ROLE weak LOGIN PASSWORD '`+pw+`'`)
	bin := pgtest.BuildCdcdT(t)
	dir := t.TempDir()
	config := func(name, user, extra string) string {
		path := filepath.Join(dir, name+".yaml")
		require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`source:
  kind: trigger
  dsn: "postgres://%s@127.0.0.1:%d/postgres?sslmode=disable"
  password: ${CDCD_T_SOURCE_PW}
trail:
  dir: %q
%s`, user, src.Port, filepath.Join(dir, "trail"), extra)), 0o600))
		return path
	}
	all := config("all", "postgres", "")
	keyed := config("keyed", "postgres", "tables:\n  exclude: [\"public.no key\"]\n")
	weak := config("weak", "weak", "tables:\n  exclude: [\"public.no key\"]\n")
	postgresKind := filepath.Join(dir, "pg.yaml")
	require.NoError(t, os.WriteFile(postgresKind, []byte("source: {dsn: x}\ntrail: {dir: /t}\n"), 0o600))

	cdcd := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "CDCD_T_SOURCE_PW="+pw)
		out, err := cmd.CombinedOutput()
		require.NotContains(t, string(out), pw, "no password in the output")
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return string(out), exit.ExitCode()
		}
		require.NoError(t, err, "%s", out)
		return string(out), 0
	}
	oneLine := func(out string) {
		t.Helper()
		require.Equal(t, 1, strings.Count(out, "\n"), "one line: %s", out)
	}
	installed := func() (tables, triggers int) {
		require.NoError(t, src.QueryRow(`SELECT (SELECT count(*) FROM pg_class WHERE oid = to_regclass('cdcd.change_log')),
			(SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'cdcd\_%')`, &tables, &triggers))
		return tables, triggers
	}

	t.Run("a table without a key", func(t *testing.T) {
		out, code := cdcd("trigger", "install", "--config", all)
		require.Equal(t, 1, code, out)
		oneLine(out)
		require.Contains(t, out, `"public"."no key"`)
		require.Contains(t, out, "add a primary key")
		require.Contains(t, out, "source.allow_keyless: true")
		require.NotContains(t, out, "orders")
		log, trig := installed()
		require.Zero(t, log+trig, "nothing installed")
	})
	t.Run("a role without the right to create triggers", func(t *testing.T) {
		out, code := cdcd("trigger", "install", "--config", weak)
		require.Equal(t, 1, code, out)
		oneLine(out)
		require.Contains(t, out, "role weak lacks CREATE on database postgres (GRANT CREATE ON DATABASE")
		require.Contains(t, out, `TRIGGER on table "public"."orders" (GRANT TRIGGER ON "public"."orders" TO "weak")`)
		log, trig := installed()
		require.Zero(t, log+trig, "nothing installed")
	})
	t.Run("install", func(t *testing.T) {
		out, code := cdcd("trigger", "install", "--config", keyed)
		require.Zero(t, code, out)
		require.Equal(t, "captured public.lines\ncaptured public.orders\n", out)
		log, trig := installed()
		require.Equal(t, 1, log)
		require.Equal(t, 8, trig, "four triggers on each of two tables")
		src.ExecT(t, "postgres", `INSERT INTO orders VALUES (1, 'a')`)
		var rows int
		require.NoError(t, src.QueryRow(`SELECT count(*) FROM cdcd.change_log`, &rows))
		require.Equal(t, 1, rows, "the insert was recorded")
	})
	t.Run("re-install is idempotent", func(t *testing.T) {
		out, code := cdcd("trigger", "install", "--config", keyed)
		require.Zero(t, code, out)
		require.Equal(t, "captured public.lines\ncaptured public.orders\n", out)
		_, trig := installed()
		require.Equal(t, 8, trig)
		var rows int
		require.NoError(t, src.QueryRow(`SELECT count(*) FROM cdcd.change_log`, &rows))
		require.Equal(t, 1, rows, "the change log is kept")
	})
	t.Run("a role without the right, installed already", func(t *testing.T) {
		out, code := cdcd("trigger", "install", "--config", weak)
		require.Equal(t, 1, code, out)
		oneLine(out)
		require.Contains(t, out, "CREATE on schema cdcd")
	})
	t.Run("uninstall", func(t *testing.T) {
		out, code := cdcd("trigger", "uninstall", "--config", keyed)
		require.Zero(t, code, out)
		oneLine(out)
		log, trig := installed()
		require.Zero(t, log+trig, "nothing left")
		out, code = cdcd("trigger", "uninstall", "--config", keyed)
		require.Zero(t, code, "uninstalling twice does nothing: %s", out)
	})
	t.Run("kind postgres", func(t *testing.T) {
		out, code := cdcd("trigger", "install", "--config", postgresKind)
		require.Equal(t, 2, code, out)
		oneLine(out)
		require.Contains(t, out, "source.kind: cdcd trigger works with source.kind: trigger")
	})
}
