// Package dsn reads and rewrites PostgreSQL connection strings (DSNs) the way
// libpq and pgconn read them, so that the rest of cdcd never has to: it hides
// passwords for logs, errors and reports (Redact, RedactError), names what a
// DSN points at (Host, SSLMode, Password), and sets a password on a DSN
// (WithPassword).
//
// Both of libpq's forms are understood: the URI form
// (postgres://user:password@host:5432/db?sslmode=verify-full) and the
// keyword/value form (host=h user=u password='p q' dbname=db), with libpq's
// quoting and backslash escapes. The syntax rules mirror pgconn's parsers
// (github.com/jackc/pgx/v5/pgconn), which mirror libpq's; a malformed DSN is
// read leniently, and whatever cannot be read is treated as secret.
//
// The package depends on nothing else in cdcd.
package dsn
