package preflight_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/preflight"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
)

func run(t *testing.T, cfg preflight.Config) map[string]preflight.Result {
	t.Helper()
	rs := preflight.Run(context.Background(), cfg)
	var b bytes.Buffer
	require.NoError(t, preflight.WriteText(&b, rs))
	t.Logf("\n%s", b.String())
	out := map[string]preflight.Result{}
	for _, r := range rs {
		_, dup := out[r.Check]
		require.False(t, dup, "check %s reported twice", r.Check)
		require.NotContains(t, r.Detail+r.Remedy, "\n", "one line per check")
		out[r.Check] = r
	}
	return out
}

// requireOnly asserts that exactly the named checks fail, each with a
// remedy containing the given text.
func requireOnly(t *testing.T, got map[string]preflight.Result, fails map[string]string) {
	t.Helper()
	for name, r := range got {
		remedy, want := fails[name]
		if !want {
			require.NotEqual(t, preflight.Fail, r.Status, "%s should not fail: %s", name, r.Detail)
			continue
		}
		require.Equal(t, preflight.Fail, r.Status, "%s should fail", name)
		require.Contains(t, r.Remedy, remedy, name)
	}
	for name := range fails {
		require.Contains(t, got, name)
	}
}

func dsnAs(c *pgtest.Cluster, user string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable", user, c.Port)
}

// closedPort is a TCP port nothing listens on.
func closedPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

// TestCheckRightAndWrong: against a correctly prepared source and target
// nothing fails; each of the classic mistakes fails its own line, and only
// that line, with the remedy.
func TestCheckRightAndWrong(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	replica := pgtest.StartT(t, pgtest.Options{Name: "walreplica", Conf: map[string]string{"wal_level": "replica"}})
	schema := []string{
		`CREATE TABLE orders (id int PRIMARY KEY, note text)`,
		`CREATE TABLE lines (order_id int, n int, qty int, PRIMARY KEY (order_id, n))`,
	}
	src.ExecT(t, "postgres", schema...)
	dst.ExecT(t, "postgres", schema...)
	src.ExecT(t, "postgres",
		`CREATE PUBLICATION cdcd FOR TABLE orders, lines`,
		`CREATE PUBLICATION allpub FOR ALL TABLES`,
		`CREATE ROLE cdc LOGIN REPLICATION`,
		`CREATE ROLE app LOGIN`,
	)
	replica.ExecT(t, "postgres", schema...)
	replica.ExecT(t, "postgres", `CREATE PUBLICATION cdcd FOR TABLE orders, lines`)

	good := func() preflight.Config {
		return preflight.Config{
			Source:   postgres.Config{DSN: dsnAs(src, "cdc"), Create: true},
			TrailDir: t.TempDir() + "/trail",
			Sinks:    []preflight.Sink{{Name: "target", Kind: "postgres", DSN: dst.DSN("postgres")}},
		}
	}

	t.Run("right", func(t *testing.T) {
		got := run(t, good())
		requireOnly(t, got, nil)
		require.Equal(t, preflight.Pass, got["source.wal_level"].Status)
		require.Equal(t, preflight.Pass, got["source.role"].Status)
		require.Contains(t, got["source.publication"].Detail, "publication cdcd exists (2 tables)")
		require.Contains(t, got["source.slot"].Detail, "will create it")
		require.Contains(t, got["sink.target.tables"].Detail, "all 2 published tables exist")
		require.Equal(t, preflight.Warn, got["source.max_slot_wal_keep_size"].Status, "unlimited by default")
		require.Contains(t, got["source.toast"].Detail, "public.orders")
		require.Contains(t, got["trail.dir"].Detail, "will create it")
	})
	t.Run("wal_level=replica", func(t *testing.T) {
		cfg := good()
		cfg.Source.DSN = replica.DSN("postgres")
		requireOnly(t, run(t, cfg), map[string]string{"source.wal_level": "wal_level = logical"})
	})
	t.Run("role without REPLICATION", func(t *testing.T) {
		cfg := good()
		cfg.Source.DSN = dsnAs(src, "app")
		got := run(t, cfg)
		requireOnly(t, got, map[string]string{"source.role": `ALTER ROLE app REPLICATION`})
		require.Contains(t, got["source.role"].Detail, "lacks the REPLICATION privilege")
	})
	t.Run("missing publication", func(t *testing.T) {
		cfg := good()
		cfg.Source.Publication = "nopub"
		cfg.Source.Create = false
		requireOnly(t, run(t, cfg), map[string]string{
			"source.publication": "CREATE PUBLICATION nopub FOR ALL TABLES",
			"source.slot":        "pg_create_logical_replication_slot('cdcd', 'pgoutput')",
		})
	})
	t.Run("table without primary key", func(t *testing.T) {
		src.ExecT(t, "postgres", `CREATE TABLE audit (at timestamptz, what text)`)
		dst.ExecT(t, "postgres", `CREATE TABLE audit (at timestamptz, what text)`)
		defer src.ExecT(t, "postgres", `DROP TABLE audit`)
		cfg := good()
		cfg.Source.Publication = "allpub"
		got := run(t, cfg)
		requireOnly(t, got, map[string]string{"source.replica_identity": "ADD PRIMARY KEY"})
		require.Contains(t, got["source.replica_identity"].Detail, "public.audit (no primary key)")
	})
	t.Run("unreachable target", func(t *testing.T) {
		cfg := good()
		cfg.Sinks[0].DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=5", closedPort(t))
		got := run(t, cfg)
		requireOnly(t, got, map[string]string{"sink.target.connect": "that the target runs"})
		require.Contains(t, got["sink.target.connect"].Detail, "cannot connect to the target postgres@127.0.0.1")
	})
	t.Run("missing target table", func(t *testing.T) {
		dst.ExecT(t, "postgres", `DROP TABLE lines`)
		defer dst.ExecT(t, "postgres", schema[1])
		got := run(t, good())
		requireOnly(t, got, map[string]string{"sink.target.tables": "pg_dump --schema-only"})
		require.Contains(t, got["sink.target.tables"].Detail, "1 of 2 published tables are missing on the target: public.lines")
	})
	t.Run("unreachable source", func(t *testing.T) {
		cfg := good()
		cfg.Source.DSN = fmt.Sprintf("postgres://cdc@127.0.0.1:%d/postgres?sslmode=disable", closedPort(t))
		cfg.Sinks = nil
		got := run(t, cfg)
		requireOnly(t, got, map[string]string{"source.connect": "pg_hba.conf"})
	})
	t.Run("json", func(t *testing.T) {
		cfg := good()
		cfg.Source.DSN = replica.DSN("postgres")
		var b bytes.Buffer
		require.NoError(t, preflight.WriteJSON(&b, preflight.Run(context.Background(), cfg)))
		var doc struct {
			OK      bool               `json:"ok"`
			Results []preflight.Result `json:"results"`
		}
		require.NoError(t, json.Unmarshal(b.Bytes(), &doc))
		require.False(t, doc.OK)
		var failed []string
		for _, r := range doc.Results {
			if r.Status == preflight.Fail {
				failed = append(failed, r.Check)
			}
		}
		require.Equal(t, "source.wal_level", strings.Join(failed, ","))
	})
}

// TestCheckStandbyPG17: decoding on a PG17 physical standby passes with
// hot_standby_feedback and a physical slot, and fails without feedback.
func TestCheckStandbyPG17(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	primary := pgtest.StartT(t, pgtest.Options{Version: pgtest.V17, Name: "primary"})
	primary.ExecT(t, "postgres", `CREATE TABLE orders (id int PRIMARY KEY)`, `CREATE PUBLICATION cdcd FOR ALL TABLES`)
	standby := primary.StartStandbyT(t, pgtest.Options{})
	cfg := preflight.Config{
		Source:   postgres.Config{DSN: standby.DSN("postgres"), PrimaryDSN: primary.DSN("postgres"), Create: true},
		TrailDir: t.TempDir(),
	}
	got := run(t, cfg)
	requireOnly(t, got, nil)
	require.Contains(t, got["source.version"].Detail, "(physical standby)")
	require.Equal(t, preflight.Pass, got["source.standby.hot_standby_feedback"].Status)
	require.Equal(t, preflight.Pass, got["source.standby.primary_slot"].Status)

	// A publication created on the primary but not yet replayed: the
	// check looks on the primary instead of calling it missing.
	standby.ExecT(t, "postgres", `SELECT pg_wal_replay_pause()`)
	primary.ExecT(t, "postgres", `CREATE PUBLICATION lagging FOR ALL TABLES`)
	lag := cfg
	lag.Source.Publication = "lagging"
	pub := run(t, lag)["source.publication"]
	require.Equal(t, preflight.Warn, pub.Status, "%+v", pub)
	require.Contains(t, pub.Detail, "publication lagging exists on the primary but the standby has not replayed it yet")
	standby.ExecT(t, "postgres", `SELECT pg_wal_replay_resume()`)

	standby.ExecT(t, "postgres", `ALTER SYSTEM SET hot_standby_feedback = off`, `SELECT pg_reload_conf()`)
	requireOnly(t, run(t, cfg), map[string]string{"source.standby.hot_standby_feedback": "hot_standby_feedback = on"})
}

// TestCheckTLSAndPasswords: through the whole check, every PostgreSQL DSN
// short of sslmode=verify-full warns, naming its role and host; IAM without
// verify-full fails; and no line, passing or failing, holds a password.
func TestCheckTLSAndPasswords(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	const pw = `s3cr3t 'pw' #1`
	src := pgtest.StartT(t, pgtest.Options{Name: "tlssource", Password: pw})
	wrong := strings.Replace(src.DSN("postgres"), url.UserPassword("postgres", pw).String(), url.UserPassword("postgres", "wr0ng-"+pw).String(), 1)
	require.NotEqual(t, src.DSN("postgres"), wrong)
	kv := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable password='%s'", src.Port, strings.ReplaceAll(pw, "'", `\'`))

	cfg := preflight.Config{
		Source:   postgres.Config{DSN: src.DSN("postgres"), PrimaryDSN: kv, Create: true},
		TrailDir: t.TempDir(),
		Sinks: []preflight.Sink{
			{Name: "target", Kind: "postgres", DSN: wrong},
			{Name: "aurora", Kind: "postgres", DSN: "host=aurora.example.com user=cdcd sslmode=require", IAM: true},
		},
	}
	rs := preflight.Run(context.Background(), cfg)
	var text, js bytes.Buffer
	require.NoError(t, preflight.WriteText(&text, rs))
	require.NoError(t, preflight.WriteJSON(&js, rs))
	t.Logf("\n%s", text.String())
	for _, out := range []string{text.String(), js.String()} {
		for _, secret := range []string{pw, url.QueryEscape(pw), url.PathEscape(pw), "s3cr3t"} {
			require.NotContains(t, out, secret)
		}
	}
	require.Regexp(t, `(?m)^WARN +source\.tls +source \(127\.0\.0\.1\) connects with sslmode=disable, not verify-full`, text.String())
	require.Regexp(t, `(?m)^WARN +source\.primary_tls +primary \(127\.0\.0\.1\) connects with sslmode=disable`, text.String())
	require.Regexp(t, `(?m)^WARN +sink\.target\.tls +sink target \(127\.0\.0\.1\)`, text.String())
	require.Regexp(t, `(?m)^FAIL +sink\.aurora\.tls +sink aurora \(aurora\.example\.com\) connects with sslmode=require.*IAM`, text.String())
	got := map[string]preflight.Result{}
	for _, r := range rs {
		got[r.Check] = r
	}
	require.Equal(t, preflight.Pass, got["source.connect"].Status, "the password is right")
	require.Equal(t, preflight.Fail, got["sink.target.connect"].Status, "the password is wrong")
	require.Contains(t, got["sink.target.connect"].Detail, "password authentication failed")
}
