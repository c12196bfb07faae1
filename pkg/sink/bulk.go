package sink

import (
	"context"
	"io"

	"github.com/cdcd-io/cdcd/pkg/schema"
)

// BulkLoader is a sink that loads snapshot chunks straight from the source's
// COPY output (PostgreSQL: COPY into the target table). A snapshot opens one
// BulkLoader per worker, so each must hold its own connection.
type BulkLoader interface {
	// Load runs c in one target transaction: it truncates the table when
	// c.Truncate is set, loads data (COPY in c.Format; nil loads nothing)
	// and records c.ID as done in the same transaction, so after a crash a
	// chunk is either wholly loaded and recorded or not at all. It returns
	// the number of rows loaded.
	Load(ctx context.Context, c *BulkChunk, data io.Reader) (int64, error)
	// Loaded returns the IDs of the chunks of snapshot snapshotID that
	// committed loads recorded.
	Loaded(ctx context.Context, snapshotID string) (map[string]bool, error)
}

// BulkChunk is one unit of a snapshot's bulk load.
type BulkChunk struct {
	// SnapshotID and ID identify the chunk in the loaded record.
	SnapshotID, ID string
	// Schema and Table name the target table.
	Schema, Table string
	// Columns are the target column names, in the order of the data.
	Columns []string
	// Binary says the data is COPY binary format; otherwise COPY text.
	Binary bool
	// Truncate empties the target table first, in the same transaction.
	Truncate bool
	// Def is the table's definition (target names, source column types,
	// primary key), for loaders that convert values rather than COPY them.
	Def *schema.Table
}

// SchemaCreator is a sink that can create the tables a snapshot loads, and
// check existing ones for compatible columns.
type SchemaCreator interface {
	// EnsureTables checks the existing target tables and, with create,
	// creates the missing schemas, types and tables; a mismatch (or, without
	// create, a missing table) is one error naming every table and column in
	// question. It returns the tables it created (schema.Table.Target
	// names): their primary keys are left for FinishTable when deferKeys
	// is set, so loading does not maintain an index.
	EnsureTables(ctx context.Context, tables []*schema.Table, create, deferKeys bool) (created []string, err error)
	// FinishTable adds the deferred primary key of a table EnsureTables
	// created (a no-op when it has one).
	FinishTable(ctx context.Context, t *schema.Table) error
}

// TextLoader is a BulkLoader that may need COPY's text format, because its
// target stores some source types as others (Aurora DSQL: text for the
// types it lacks), which binary COPY cannot fill.
type TextLoader interface {
	// TextOnly reports that Load must be given COPY text.
	TextOnly() bool
}
