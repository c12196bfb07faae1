package cutover_test

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// pgxExec runs sql on a new session of c (new sessions get the database's
// defaults, read-only when fenced).
func pgxExec(c *pgtest.Cluster, sql string) (pgconn.CommandTag, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	defer conn.Close(ctx)
	return conn.Exec(ctx, sql)
}
