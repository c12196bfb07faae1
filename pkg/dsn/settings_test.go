package dsn

import "testing"

func TestPassword(t *testing.T) {
	clearEnv(t)
	tests := []struct{ dsn, want string }{
		{"postgres://u:s3cret@h/db", "s3cret"},
		{"postgres://u:p%40ss@h/db", "p@ss"},
		{"postgres://u:one@h/db?password=two", "two"},
		{"host=h password='p q'", "p q"},
		{`host=h password='it\'s'`, "it's"},
		{`host=h password=p\ q`, "p q"},
		{"host=h", ""},
		// Unparseable: read leniently.
		{"host=h password=s3cret port=notanumber", "s3cret"},
		{"host=h password=s3cret garbage", "s3cret"},
		{"postgres://u:s3cret@h:notaport/db", "s3cret"},
	}
	for _, tt := range tests {
		if got := Password(tt.dsn); got != tt.want {
			t.Errorf("Password(%q) = %q, want %q", tt.dsn, got, tt.want)
		}
	}
	t.Setenv("PGPASSWORD", "fromenv")
	if got := Password("host=h"); got != "fromenv" {
		t.Errorf("Password with PGPASSWORD = %q", got)
	}
	if got := Password("host=h garbage"); got != "fromenv" {
		t.Errorf("Password of an unparseable DSN with PGPASSWORD = %q", got)
	}
}

func TestHost(t *testing.T) {
	clearEnv(t)
	tests := []struct{ dsn, want string }{
		{"postgres://u:pw@db.example.com:5432/db", "db.example.com"},
		{"postgres://u@h1:5432,h2:5433/db", "h1"},
		{"postgres://u@[::1]:5432/db", "::1"},
		{"host=h1,h2 port=5432,5433", "h1"},
		{"host=/var/run/postgresql", "/var/run/postgresql"},
		// Unparseable: read leniently.
		{"host=h1,h2 port=nope", "h1"},
		{"postgres://u:pw@h1:nope,h2/db", "h1"},
		{"postgres://u:pw@[::1]:nope/db", "::1"},
		{"garbage", ""},
	}
	for _, tt := range tests {
		if got := Host(tt.dsn); got != tt.want {
			t.Errorf("Host(%q) = %q, want %q", tt.dsn, got, tt.want)
		}
	}
}

func TestSSLMode(t *testing.T) {
	clearEnv(t)
	tests := []struct{ dsn, want string }{
		{"host=h", "prefer"},
		{"postgres://h/db", "prefer"},
		{"host=h sslmode=verify-full", "verify-full"},
		{"host=h sslmode=require sslmode=disable", "disable"},
		{"host=h sslmode='verify-ca'", "verify-ca"},
		{"postgres://h/db?sslmode=verify-full", "verify-full"},
		{"postgres://h/db?ssl=true", "require"},
		{"postgres://h/db?ssl=true&sslmode=verify-full", "verify-full"},
		{"postgres://h/db?sslmode=verify-full&ssl=true", "require"},
		{"postgres://h/db?ssl=true&ssl=false", "prefer"},
		{"host=h sslnegotiation=direct", "require"},
	}
	for _, tt := range tests {
		if got := SSLMode(tt.dsn); got != tt.want {
			t.Errorf("SSLMode(%q) = %q, want %q", tt.dsn, got, tt.want)
		}
	}
	t.Setenv("PGSSLMODE", "verify-full")
	if got := SSLMode("host=h"); got != "verify-full" {
		t.Errorf("SSLMode with PGSSLMODE = %q", got)
	}
	if got := SSLMode("host=h sslmode=disable"); got != "disable" {
		t.Errorf("SSLMode of a DSN's own sslmode with PGSSLMODE = %q", got)
	}
}
