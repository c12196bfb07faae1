package snapshot

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/apply"
	"github.com/cdcd-io/cdcd/pkg/mapping"
	"github.com/cdcd-io/cdcd/pkg/schema"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
)

// The snapshot modes.
const (
	// ModeNever streams only: the target must hold the data already.
	ModeNever = "never"
	// ModeInitial copies once, before a new sink applies its first change;
	// an interrupted copy resumes on the next start.
	ModeInitial = "initial"
	// ModeAlways copies again (truncating the target tables) on every
	// start, after which the stream continues.
	ModeAlways = "always"
)

// Config configures one sink's snapshot. The zero value of every optional
// field means its default.
type Config struct {
	// Mode is never, initial or always. Default never.
	Mode string
	// Parallelism is the number of copy workers (source connections and,
	// for bulk-loading sinks, target connections). Default 4.
	Parallelism int
	// ChunkRows is the target size of a chunk: tables with a primary key
	// and at least twice as many rows are split into key ranges of about
	// this many rows. Default 250000, or less (not under 50000) so that a
	// table gives each worker at least 4 chunks: workers that finish
	// together leave no tail copied by one worker alone.
	ChunkRows int64
	// CreateSchema creates missing target schemas, types and tables
	// (schema.create). Default false: they must exist.
	CreateSchema bool
	// BatchRows is the batch size for sinks without bulk loading. Default 5000.
	BatchRows int
	// Source is the source's configuration (DSN, PrimaryDSN, Slot,
	// Publication). Required.
	Source postgres.Config
	// Map selects and maps tables. Default: every published table, unchanged.
	Map *mapping.Map
	// StateDir holds the state file (the trail directory). Required.
	StateDir string
	// Sink is the sink's name. Required.
	Sink string
	// Open connects the sink (without the stream's mapping decorator): the
	// snapshot opens one per worker when it is a sink.BulkLoader.
	Open apply.OpenFunc
	// Export, when set, exports the snapshot the copy reads under instead
	// of a temporary logical slot next to Source.Slot: for sources other
	// than pgoutput (the trigger source places a batch boundary there, see
	// trigger.Exports). The copy then skips nothing it needs a slot for.
	Export func(ctx context.Context) (*Exported, error)
	// Tables, when set, lists the source tables to copy (the map still
	// selects among them) instead of Source.Publication's.
	Tables func(ctx context.Context, q *pgx.Conn) ([]schema.Name, error)
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
	// Bar receives per-table progress bars; nil: logs every LogInterval.
	Bar io.Writer

	autoChunkRows bool // ChunkRows is the default: see chunkRows
}

// minAutoChunkRows is the smallest chunk the default ChunkRows shrinks to.
const minAutoChunkRows = 50000

// chunkRows is the chunk size for a table of rows rows.
func (c Config) chunkRows(rows int64) int64 {
	if !c.autoChunkRows {
		return c.ChunkRows
	}
	return min(c.ChunkRows, max(rows/int64(4*c.Parallelism), minAutoChunkRows))
}

func (c Config) defaults() (Config, error) {
	if c.Mode == "" {
		c.Mode = ModeNever
	}
	switch c.Mode {
	case ModeNever, ModeInitial, ModeAlways:
	default:
		return c, fmt.Errorf("snapshot.mode %q: use initial, never or always", c.Mode)
	}
	if c.Parallelism <= 0 {
		c.Parallelism = 4
	}
	if c.ChunkRows <= 0 {
		c.ChunkRows = 250000
		c.autoChunkRows = true
	}
	if c.BatchRows <= 0 {
		c.BatchRows = 5000
	}
	c.Source = c.Source.Defaults()
	if c.Map == nil {
		c.Map, _ = mapping.New(mapping.Config{})
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.StateDir == "" || c.Sink == "" || c.Open == nil {
		return c, fmt.Errorf("snapshot: state directory, sink name and opener are required")
	}
	return c, nil
}
