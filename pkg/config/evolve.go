package config

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/dsn"
	"github.com/cdcd-io/cdcd/pkg/schema"
)

// sourceTable returns how a PostgreSQL sink reads a source table's
// definition when a schema change makes it create a table or column: a
// short connection to the source per call (schema changes are rare). On a
// standby source it reads the standby's catalog, which has replayed at
// least as far as the change being applied.
func (f *File) sourceTable() func(ctx context.Context, oid uint32) (*schema.Table, error) {
	conn := f.Source.DSN
	return func(ctx context.Context, oid uint32) (*schema.Table, error) {
		c, err := pgx.Connect(ctx, conn)
		if err != nil {
			return nil, dsn.RedactError(err, dsn.Password(conn))
		}
		defer c.Close(context.WithoutCancel(ctx))
		return schema.Read(ctx, c, oid)
	}
}
