package dsn

import (
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Password returns the password a connection with dsn would send: the DSN's
// own, or else PGPASSWORD's or the passfile's, as pgconn.ParseConfig reads
// them. For a DSN that pgconn cannot parse it returns the password as
// written in it, read leniently, or PGPASSWORD. It is what RedactError
// needs to hide.
func Password(dsn string) string {
	if c, err := pgconn.ParseConfig(dsn); err == nil {
		return c.Password
	}
	if pw, ok := settings(dsn)["password"]; ok {
		return pw
	}
	return os.Getenv("PGPASSWORD")
}

// Host returns the first host dsn connects to, for messages: a name, an
// address or a Unix socket directory, as pgconn.ParseConfig reads it (so
// PGHOST or pgconn's default when the DSN names none). For a DSN that
// pgconn cannot parse it returns the first host as written, read leniently,
// or "" when there is none.
func Host(dsn string) string {
	if c, err := pgconn.ParseConfig(dsn); err == nil {
		return c.Host
	}
	h := settings(dsn)["host"]
	if isURI(dsn) {
		h, _, _ = strings.Cut(h, ",")
		if strings.HasPrefix(h, "[") {
			if i := strings.IndexByte(h, ']'); i >= 0 {
				return h[1:i]
			}
		}
		h, _, _ = strings.Cut(h, ":")
		return h
	}
	h, _, _ = strings.Cut(h, ",")
	return h
}

// SSLMode returns the sslmode a connection with dsn uses, as libpq and
// pgconn read it: the DSN's sslmode (in a URI, ssl=true means require),
// else PGSSLMODE, else "prefer"; with sslnegotiation=direct, "prefer"
// becomes "require". A service file's sslmode is not read.
func SSLMode(dsn string) string {
	s := settings(dsn)
	mode, ok := s["sslmode"]
	if !ok {
		mode = os.Getenv("PGSSLMODE")
	}
	if mode == "" {
		mode = "prefer"
	}
	if mode == "prefer" && s["sslnegotiation"] == "direct" {
		mode = "require"
	}
	return mode
}
