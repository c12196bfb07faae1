package verify

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/dsn"
)

// pinned are the session settings every verify connection runs with, so
// both sides render values the same way.
var pinned = map[string]string{
	"DateStyle":          "ISO, MDY",
	"IntervalStyle":      "postgres",
	"TimeZone":           "UTC",
	"extra_float_digits": "3",
	"bytea_output":       "hex",
	"lc_monetary":        "C",
	"xmloption":          "content",
	"application_name":   "cdcd-verify",
}

// connect opens a connection with the pinned settings; what names the
// server in errors ("source", "target aurora").
func connect(ctx context.Context, conn, what string) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(conn)
	if err != nil {
		return nil, fmt.Errorf("parse the %s's dsn %s: %w", what, dsn.Redact(conn), dsn.RedactError(err, dsn.Password(conn)))
	}
	for k, v := range pinned {
		cc.RuntimeParams[k] = v
	}
	c, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect to the %s (%s): %w", what, dsn.Redact(conn), dsn.RedactError(err, cc.Password))
	}
	return c, nil
}

// beginSnapshot starts a REPEATABLE READ, READ ONLY transaction; with a
// name it imports that exported snapshot.
func beginSnapshot(ctx context.Context, c *pgx.Conn, name string) error {
	if _, err := c.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		return err
	}
	if name != "" {
		if _, err := c.Exec(ctx, "SET TRANSACTION SNAPSHOT "+quote(name)); err != nil {
			return fmt.Errorf("import snapshot %s: %w", name, err)
		}
	}
	return nil
}

// exportSnapshot starts a snapshot transaction on c and exports it.
func exportSnapshot(ctx context.Context, c *pgx.Conn, from string) (string, error) {
	if err := beginSnapshot(ctx, c, from); err != nil {
		return "", err
	}
	var name string
	if err := c.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&name); err != nil {
		return "", fmt.Errorf("export snapshot: %w", err)
	}
	return name, nil
}

func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
