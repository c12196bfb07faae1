package config_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/internal/pipetest"
	"github.com/cdcd-io/cdcd/pkg/config"
)

// nasty holds every byte the issue names: #, both quotes, a backslash, @,
// /, a space and a newline.
const nasty = "p#w'd\"x\\y@z/ q\nr"

// withRole starts a cluster that asks TCP clients for a password and adds
// the login role app with password pw.
func withRole(t *testing.T, name, pw string) *pgtest.Cluster {
	t.Helper()
	c := pgtest.StartT(t, pgtest.Options{Name: name, Password: "bootstrap"})
	// A string constant: only the single quote needs doubling
	// (standard_conforming_strings is on), a newline is taken as is.
	c.ExecT(t, "postgres", fmt.Sprintf(`CREATE ROLE app LOGIN SUPERUSER REPLICATION PASSWORD '%s'`, strings.ReplaceAll(pw, "'", "''")))
	return c
}

func appDSN(c *pgtest.Cluster) string {
	return fmt.Sprintf("postgres://app@127.0.0.1:%d/postgres?sslmode=disable", c.Port)
}

// TestPasswordReachesTheServerByteExact: a password holding YAML and URL
// special characters and a newline, given as ${NAME} and as ${file:…},
// authenticates cdcd's connections to a real source and target (scram
// checks every byte), and a pipeline built from the file replicates a row.
func TestPasswordReachesTheServerByteExact(t *testing.T) {
	src := withRole(t, "source", nasty)
	dst := withRole(t, "target", nasty)
	src.ExecT(t, "postgres", `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	dst.ExecT(t, "postgres", `CREATE TABLE t (id int PRIMARY KEY, v text)`)

	t.Setenv("CDCD_T_SOURCE_PW", nasty)
	pwFile := filepath.Join(t.TempDir(), "target-password")
	require.NoError(t, os.WriteFile(pwFile, []byte(nasty+"\n"), 0o600))
	doc := fmt.Sprintf(`
source:
  dsn: %q
  password: ${CDCD_T_SOURCE_PW}
  create: true
  status_interval: 200ms
trail:
  dir: %q
sinks:
  - name: target
    kind: postgres
    dsn: %q
    password: ${file:%s}
    batch: { max_delay: 20ms }
`, appDSN(src), t.TempDir(), appDSN(dst), pwFile)

	// The expanded DSNs authenticate as app.
	f, err := config.Parse([]byte(doc))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, conn := range []string{f.Source.DSN, f.Sinks[0].DSN} {
		c, err := pgx.Connect(ctx, conn)
		require.NoError(t, err)
		var user string
		require.NoError(t, c.QueryRow(ctx, `SELECT current_user`).Scan(&user))
		require.Equal(t, "app", user)
		require.NoError(t, c.Close(ctx))
	}

	// One byte off is refused: the check above can fail.
	t.Setenv("CDCD_T_SOURCE_PW", strings.TrimSuffix(nasty, "r"))
	f, err = config.Parse([]byte(doc))
	require.NoError(t, err)
	_, err = pgx.Connect(ctx, f.Source.DSN)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%v", err)
	require.Equal(t, "28P01", pgErr.Code)
	t.Setenv("CDCD_T_SOURCE_PW", nasty)

	// The whole pipeline, built from the file, replicates through them.
	r := pipetest.Start(t, doc, slog.New(slog.DiscardHandler))
	src.WaitSlotActiveT(t, "cdcd")
	src.ExecT(t, "postgres", `INSERT INTO t VALUES (1, 'through the nasty password')`)
	r.WaitApplied(t, src.MarkerT(t), time.Minute)
	var v string
	require.NoError(t, dst.QueryRow(`SELECT v FROM t WHERE id = 1`, &v))
	require.Equal(t, "through the nasty password", v)
	r.Stop(t)
}
