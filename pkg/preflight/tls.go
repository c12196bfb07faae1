package preflight

import (
	"fmt"

	"github.com/cdcd-io/cdcd/pkg/dsn"
)

// tlsCheck judges a PostgreSQL DSN's sslmode. Only verify-full both
// encrypts and checks that the server is the one the DSN names: with
// anything less a man in the middle can read the changes, and (prefer,
// allow, disable) the connection may not be encrypted at all. That warns;
// with IAM authentication, where the token is a password good for 15
// minutes, it fails. role names the DSN in the report ("source",
// "primary", "sink orders"); the detail names the host, never the password.
func tlsCheck(check, role, d string, iam bool) Result {
	mode := dsn.SSLMode(d)
	where := fmt.Sprintf("%s (%s)", role, dsn.Host(d))
	if mode == "verify-full" {
		return Result{Check: check, Status: Pass, Detail: where + " connects with sslmode=verify-full"}
	}
	var risk string
	switch mode {
	case "disable":
		risk = "the connection is not encrypted"
	case "allow", "prefer":
		risk = "the connection may not be encrypted and the server's certificate is not checked"
	case "require", "verify-ca":
		risk = "the server's certificate is not checked against its host name"
	default:
		risk = "the server's identity is not verified"
	}
	r := Result{
		Check:  check,
		Status: Warn,
		Detail: fmt.Sprintf("%s connects with sslmode=%s, not verify-full: %s", where, mode, risk),
		Remedy: "add sslmode=verify-full to the dsn (and sslrootcert=FILE when the server's CA is not in the system store)",
	}
	if iam {
		r.Status = Fail
		r.Detail += "; it authenticates with IAM tokens, which an impostor could capture and reuse"
		r.Remedy = "add sslmode=verify-full and sslrootcert=FILE (the AWS RDS CA bundle) to the sink's dsn"
	}
	return r
}

// tls checks the source's DSNs: source.dsn and, when set, source.primary_dsn.
func (c *checker) tls() {
	c.out = append(c.out, tlsCheck("source.tls", "source", c.cfg.Source.DSN, false))
	if c.cfg.Source.PrimaryDSN != "" {
		c.out = append(c.out, tlsCheck("source.primary_tls", "primary", c.cfg.Source.PrimaryDSN, false))
	}
}
