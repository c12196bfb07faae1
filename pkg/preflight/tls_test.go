package preflight

import (
	"strings"
	"testing"
)

func TestTLSCheck(t *testing.T) {
	t.Setenv("PGSSLMODE", "")
	tests := []struct {
		name, dsn string
		iam       bool
		want      Status
		detail    string
	}{
		{"verify-full", "host=db.example.com sslmode=verify-full password=s3cret", false, Pass, "sink a (db.example.com) connects with sslmode=verify-full"},
		{"verify-full url", "postgres://u:s3cret@db.example.com/db?sslmode=verify-full", true, Pass, "verify-full"},
		{"unset", "postgres://u:s3cret@db.example.com/db", false, Warn, "sink a (db.example.com) connects with sslmode=prefer, not verify-full: the connection may not be encrypted"},
		{"disable", "host=db.example.com sslmode=disable password='s3cret pw'", false, Warn, "sslmode=disable, not verify-full: the connection is not encrypted"},
		{"require", "host=db.example.com sslmode=require", false, Warn, "sslmode=require, not verify-full: the server's certificate is not checked against its host name"},
		{"verify-ca", "host=db.example.com sslmode=verify-ca", false, Warn, "sslmode=verify-ca"},
		{"iam require", "host=db.example.com sslmode=require", true, Fail, "IAM tokens"},
		{"iam unset", "postgres://u@db.example.com/db", true, Fail, "sslmode=prefer"},
		{"unparseable", "host=db.example.com password=s3cret port=x", false, Warn, "sink a (db.example.com) connects with sslmode=prefer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tlsCheck("sink.a.tls", "sink a", tt.dsn, tt.iam)
			if r.Status != tt.want || !strings.Contains(r.Detail, tt.detail) || r.Check != "sink.a.tls" {
				t.Errorf("tlsCheck(%q, iam %v) = %+v, want %s with %q", tt.dsn, tt.iam, r, tt.want, tt.detail)
			}
			if r.Status != Pass && !strings.Contains(r.Remedy, "sslmode=verify-full") {
				t.Errorf("remedy %q does not say verify-full", r.Remedy)
			}
			if strings.Contains(r.Detail+r.Remedy, "s3cret") {
				t.Errorf("result holds the password: %+v", r)
			}
		})
	}
}
