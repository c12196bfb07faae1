package dsn

import (
	"maps"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// nastyPasswords hold every byte a connection string treats specially.
var nastyPasswords = []string{
	"plain",
	"p q",
	"it's",
	`back\slash`,
	`trailing\`,
	`\'`,
	"''",
	"#hash",
	"@at",
	"a/b",
	"a?b",
	"a:b",
	"a&b=c",
	"100%",
	"%41",
	"+plus+",
	" lead and trail ",
	"new\nline\ttab\r",
	`"double"`,
	"password=x host=evil",
	"ünïcødé",
	"\xff\xfe",
	"$&+,;=",
	"[::1]",
}

// dsns cover both forms, with and without a password of their own.
var dsns = []string{
	"",
	"host=h user=u dbname=db",
	"host=h user=u password=old dbname=db",
	"host=h user=u password='old one' dbname=db sslmode=disable",
	`host=h user=u dbname=d\`,
	`host=h user=u application_name='a b'`,
	"host=h port=5433 user=u connect_timeout=7 application_name=x   ",
	"postgres://h/db",
	"postgres://u@h:5433/db",
	"postgres://u:old@h/db?sslmode=disable",
	"postgresql://u@h1:5432,h2:5433/db?application_name=app",
	"postgres://u:old@h/db?password=older&application_name=app",
	"postgres://u@[::1]:5433/db?ssl=true",
	"postgres://u@h",
	"postgres://u@h?password=older",
}

func TestWithPassword(t *testing.T) {
	clearEnv(t)
	for _, d := range dsns {
		for _, pw := range nastyPasswords {
			out, err := WithPassword(d, pw)
			if err != nil {
				t.Fatalf("WithPassword(%q, %q): %v", d, pw, err)
			}
			checkSame(t, d, out, pw)
		}
	}
}

func TestWithPasswordKeepsForm(t *testing.T) {
	tests := []struct{ dsn, pw, want string }{
		{"postgres://u@h/db", "p@ss/w:rd", "postgres://u:p%40ss%2Fw%3Ard@h/db"},
		{"postgres://u:old@h/db?password=older&sslmode=require", "new", "postgres://u:new@h/db?sslmode=require"},
		{"postgres://h/db?password=older", "new", "postgres://:new@h/db"},
		{"host=h user=u", `it's a \`, `host=h user=u password='it\'s a \\'`},
		{`host=h dbname=d\`, "pw", `host=h dbname=d password='pw'`},
		{"host=h", "", "host=h"},
		{"not a dsn", "", "not a dsn"},
	}
	for _, tt := range tests {
		got, err := WithPassword(tt.dsn, tt.pw)
		if err != nil || got != tt.want {
			t.Errorf("WithPassword(%q, %q) = %q, %v; want %q", tt.dsn, tt.pw, got, err, tt.want)
		}
	}
}

func TestWithPasswordErrors(t *testing.T) {
	tests := []struct{ dsn, pw string }{
		{"host=h", "nul\x00byte"},
		{"host='h password=s3cret", "new"},
		{"host=h password=s3cret garbage", "new"},
	}
	for _, tt := range tests {
		out, err := WithPassword(tt.dsn, tt.pw)
		if err == nil {
			t.Errorf("WithPassword(%q, %q) = %q, want an error", tt.dsn, tt.pw, out)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "nul\x00byte") {
			t.Errorf("error holds a password: %v", err)
		}
	}
}

func FuzzWithPassword(f *testing.F) {
	for i, pw := range nastyPasswords {
		f.Add(i, pw)
	}
	clearEnv(f)
	f.Fuzz(func(t *testing.T, i int, pw string) {
		if pw == "" || strings.IndexByte(pw, 0) >= 0 {
			t.Skip()
		}
		d := dsns[uint(i)%uint(len(dsns))]
		out, err := WithPassword(d, pw)
		if err != nil {
			t.Fatalf("WithPassword(%q, %q): %v", d, pw, err)
		}
		checkSame(t, d, out, pw)
	})
}

// checkSame checks that pgconn parses out as it parses dsn, but with
// password pw.
func checkSame(t testing.TB, dsn, out, pw string) {
	t.Helper()
	want, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("parse %q: %v", dsn, err)
	}
	got, err := pgconn.ParseConfig(out)
	if err != nil {
		t.Fatalf("WithPassword(%q, %q) = %q: %v", dsn, pw, out, err)
	}
	if got.Password != pw {
		t.Fatalf("WithPassword(%q, %q) = %q: password %q", dsn, pw, out, got.Password)
	}
	if got.Host != want.Host || got.Port != want.Port || got.User != want.User || got.Database != want.Database ||
		got.ConnectTimeout != want.ConnectTimeout || len(got.Fallbacks) != len(want.Fallbacks) ||
		(got.TLSConfig == nil) != (want.TLSConfig == nil) || !maps.Equal(got.RuntimeParams, want.RuntimeParams) {
		t.Fatalf("WithPassword(%q, %q) = %q: config %+v, want %+v", dsn, pw, out, got, want)
	}
	for i := range got.Fallbacks {
		if got.Fallbacks[i].Host != want.Fallbacks[i].Host || got.Fallbacks[i].Port != want.Fallbacks[i].Port {
			t.Fatalf("WithPassword(%q, %q) = %q: fallback %d %+v, want %+v", dsn, pw, out, i, got.Fallbacks[i], want.Fallbacks[i])
		}
	}
}

// clearEnv unsets the libpq variables that would change how a DSN parses.
func clearEnv(t testing.TB) {
	for _, k := range []string{"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE", "PGSERVICE", "PGAPPNAME", "PGCONNECT_TIMEOUT"} {
		t.Setenv(k, "")
	}
	t.Setenv("PGPASSFILE", "/nonexistent")
}
