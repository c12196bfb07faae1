package dsn

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name, dsn, want string
		secrets         []string // must not appear in the output
	}{
		{"url", "postgres://u:s3cret@h:5432/db", "postgres://u:xxxxx@h:5432/db", []string{"s3cret"}},
		{"postgresql scheme", "postgresql://u:s3cret@h/db?sslmode=verify-full", "postgresql://u:xxxxx@h/db?sslmode=verify-full", []string{"s3cret"}},
		{"url no password", "postgres://u@h/db", "postgres://u@h/db", nil},
		{"url no userinfo", "postgres://h/db", "postgres://h/db", nil},
		{"url encoded password", "postgres://u:p%40ss%2Fw@h/db", "postgres://u:xxxxx@h/db", []string{"p%40ss", "ss%2Fw"}},
		{"url query password", "postgres://u@h/db?password=s3cret&sslmode=require", "postgres://u@h/db?password=xxxxx&sslmode=require", []string{"s3cret"}},
		{"url query encoded key", "postgres://h/db?pass%77ord=s3cret", "postgres://h/db?pass%77ord=xxxxx", []string{"s3cret"}},
		{"url query sslpassword", "postgres://h/db?sslpassword=s3cret", "postgres://h/db?sslpassword=xxxxx", []string{"s3cret"}},
		{"url both", "postgres://u:one@h/db?password=two", "postgres://u:xxxxx@h/db?password=xxxxx", []string{"one", "two"}},
		{"url multi-host", "postgres://u:s3cret@h1:5432,h2:5433/db", "postgres://u:xxxxx@h1:5432,h2:5433/db", []string{"s3cret"}},
		{"url ipv6", "postgres://u:s3cret@[::1]:5432/db", "postgres://u:xxxxx@[::1]:5432/db", []string{"s3cret"}},
		{"url unencoded slash", "postgres://u:pa/ss@h/db", "postgres://xxxxx@h/db", []string{"pa", "ss"}},
		{"url unencoded at", "postgres://u:p@ss@h/db", "postgres://xxxxx@h/db", []string{"ss"}},
		{"url question mark in userinfo", "postgres://u:pa?ss@h/db", "postgres://u:xxxxx@h/db", []string{"pa?ss"}},
		{"url query password with ampersand", "postgres://h/db?password=ab&cd&sslmode=require", "postgres://h/db?password=xxxxx&xxxxx&sslmode=require", []string{"ab", "cd"}},
		{"url query password with equals", "postgres://h/db?password=ab=cd", "postgres://h/db?xxxxx", []string{"ab", "cd"}},
		{"kv", "host=h user=u password=s3cret dbname=db", "host=h user=u password=xxxxx dbname=db", []string{"s3cret"}},
		{"kv spaces around =", "host=h password = s3cret dbname=db", "host=h password = xxxxx dbname=db", []string{"s3cret"}},
		{"kv quoted", "host=h password='pw1 pw2' dbname=db", "host=h password=xxxxx dbname=db", []string{"pw1", "pw2"}},
		{"kv quoted escaped quote", `host=h password='it\'s' dbname=db`, "host=h password=xxxxx dbname=db", []string{"it", "s'"}},
		{"kv quoted backslash", `password='a\\b' host=h`, "password=xxxxx host=h", []string{`a\`, `\b`}},
		{"kv escaped space", `host=h password=pw1\ pw2 dbname=db`, "host=h password=xxxxx dbname=db", []string{"pw1", "pw2"}},
		{"kv quoted newline", "host=h password='line1\nline2'", "host=h password=xxxxx", []string{"line1", "line2"}},
		{"kv repeated", "password=one host=h password=two", "password=xxxxx host=h password=xxxxx", []string{"one", "two"}},
		{"kv upper case", "host=h PASSWORD=s3cret", "host=h PASSWORD=xxxxx", []string{"s3cret"}},
		{"kv sslpassword", "host=h sslpassword=s3cret", "host=h sslpassword=xxxxx", []string{"s3cret"}},
		{"kv empty password", "host=h password=", "host=h password=xxxxx", nil},
		{"kv value after spaces", "host=h password= dbname=db", "host=h password= xxxxx", []string{"db"}},
		{"kv no password", "host=h dbname=db", "host=h dbname=db", nil},
		{"kv unterminated quote", "host=h password='s3cret dbname=db", "host=h password=xxxxx", []string{"s3cret", "db"}},
		{"kv unquoted space", "host=h password=pw1 pw2 dbname=db", "host=h password=xxxxx xxxxx", []string{"pw1", "pw2"}},
		{"kv garbage", "not a dsn s3cret", "xxxxx", []string{"s3cret"}},
		{"empty", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Redact(tt.dsn)
			if got != tt.want {
				t.Errorf("Redact(%q) = %q, want %q", tt.dsn, got, tt.want)
			}
			for _, s := range tt.secrets {
				if strings.Contains(got, s) {
					t.Errorf("Redact(%q) = %q: holds %q", tt.dsn, got, s)
				}
			}
		})
	}
}

func TestRedactError(t *testing.T) {
	pgErr := &pgconn.PgError{Severity: "FATAL", Code: "28P01", Message: `password authentication failed: "s3cret"`}
	base := fmt.Errorf("connect: %w", pgErr)
	tests := []struct {
		name    string
		err     error
		secrets []string
		want    string
	}{
		{"nil", nil, []string{"s3cret"}, ""},
		{"no secret", io.EOF, []string{"s3cret"}, "EOF"},
		{"empty secret", io.EOF, []string{""}, "EOF"},
		{"replaced", base, []string{"s3cret"}, `connect: FATAL: password authentication failed: "xxxxx" (SQLSTATE 28P01)`},
		{"longest first", errors.New("ab abc"), []string{"ab", "abc"}, "xxxxx xxxxx"},
		{"several", errors.New("one two three"), []string{"one", "", "three"}, "xxxxx two xxxxx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RedactError(tt.err, tt.secrets...)
			if tt.err == nil {
				if got != nil {
					t.Fatalf("RedactError(nil) = %v", got)
				}
				return
			}
			if got.Error() != tt.want {
				t.Errorf("text %q, want %q", got.Error(), tt.want)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("errors.Is(redacted, original) = false")
			}
		})
	}

	for _, d := range []string{
		`host=h password=pw1\ pw2 port=x`,
		`host=h password='pw1 pw2' port=x`,
		`host=h password = pw1pw2 port=x`,
		`postgres://u:pw1%20pw2@h:x/db`,
	} {
		_, perr := pgconn.ParseConfig(d)
		if perr == nil {
			t.Fatalf("ParseConfig(%q) succeeded", d)
		}
		got := RedactError(fmt.Errorf("parse source.dsn: %w", perr), Password(d))
		if strings.Contains(got.Error(), "pw1") || strings.Contains(got.Error(), "pw2") {
			t.Errorf("RedactError(ParseConfig(%q)) = %q: holds the password", d, got)
		}
		if !strings.Contains(got.Error(), "invalid port") {
			t.Errorf("RedactError(ParseConfig(%q)) = %q: lost the reason", d, got)
		}
		var pce *pgconn.ParseConfigError
		if !errors.As(got, &pce) {
			t.Errorf("errors.As(%v, *pgconn.ParseConfigError) = false", got)
		}
	}

	got := RedactError(fmt.Errorf("open source: %w", base), "s3cret")
	var pe *pgconn.PgError
	if !errors.As(got, &pe) || pe.Code != "28P01" {
		t.Fatalf("errors.As through the redacted error: %v, %v", pe, got)
	}
	if !errors.Is(fmt.Errorf("wrapped again: %w", got), pgErr) {
		t.Fatal("errors.Is through a wrapped redacted error = false")
	}
	if strings.Contains(got.Error(), "s3cret") {
		t.Fatalf("text holds the secret: %q", got)
	}
}

// FuzzRedact: whatever the password, the redacted DSN is the same, so no
// byte of the password survives; and no DSN makes Redact panic.
func FuzzRedact(f *testing.F) {
	for i, pw := range nastyPasswords {
		f.Add(i, pw)
	}
	f.Fuzz(func(t *testing.T, i int, pw string) {
		_ = Redact(pw) // any string as a DSN
		_ = Redact("postgres://" + pw)
		if pw == "" || strings.IndexByte(pw, 0) >= 0 {
			t.Skip()
		}
		d := dsns[uint(i)%uint(len(dsns))]
		out, err := WithPassword(d, pw)
		if err != nil {
			t.Fatalf("WithPassword(%q, %q): %v", d, pw, err)
		}
		ref, err := WithPassword(d, "pw")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := Redact(out), Redact(ref); got != want {
			t.Fatalf("Redact(%q) = %q, want %q", out, got, want)
		}
	})
}
