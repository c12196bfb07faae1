package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/copytext"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// loadDSQL is Load for FlavorDSQL. A snapshot chunk may hold more rows than
// one DSQL transaction takes, so the chunk's COPY text is read row by row
// and written in parts of at most MaxTxRows-1 rows (and MaxTxBytes), each
// an INSERT … ON CONFLICT (key) DO UPDATE in its own transaction; the last
// part also records the chunk. Crash safety: a chunk not recorded is
// loaded again whole, and its parts that did commit are upserted again —
// harmless for tables with a primary key. A table without one gets such
// rows twice, so cdcd check warns about keyless tables on DSQL. A
// truncating chunk first empties the table with bounded DELETEs (DSQL has
// no TRUNCATE).
func (s *Sink) loadDSQL(ctx context.Context, c *sink.BulkChunk, data io.Reader) (int64, error) {
	if c.Binary {
		return 0, fmt.Errorf("load chunk %s: the aurora-dsql flavor loads COPY text only", c.ID)
	}
	rel, err := s.targetRelation(ctx, c)
	if err != nil {
		return 0, err
	}
	t, err := s.table(ctx, s.conn, rel)
	if err != nil {
		return 0, err
	}
	if c.Truncate {
		if len(t.keys) == 0 {
			return 0, fmt.Errorf("load chunk %s: the aurora-dsql flavor empties tables by key and %s has none", c.ID, t.target)
		}
		for {
			var n int64
			err := s.dsqlTx(ctx, "empty "+t.target.String(), func(ctx context.Context) error {
				s.statements++
				tag, err := s.tx.Exec(ctx, deleteSomeSQL(t, s.cfg.DSQL.MaxTxRows))
				n = tag.RowsAffected()
				return err
			})
			if err != nil {
				return 0, fmt.Errorf("empty %s: %w", t.target, err)
			}
			if n == 0 {
				break
			}
		}
	}
	var (
		total int64
		rows  []change.Row
		bytes int
	)
	write := func(last bool) error {
		batch := rows
		err := s.dsqlTx(ctx, "load "+t.target.String(), func(ctx context.Context) error {
			if err := s.insert(ctx, t, batch, "load into"); err != nil {
				return err
			}
			if !last {
				return nil
			}
			// Crash safety: the record of the chunk commits with its last part.
			_, err := s.tx.Exec(ctx, "INSERT INTO "+s.chunksTable()+" (name, snapshot, chunk, rows) VALUES ($1, $2, $3, $4)",
				s.cfg.Name, c.SnapshotID, c.ID, total+int64(len(batch)))
			return err
		})
		if err != nil {
			return fmt.Errorf("load chunk %s into %s: %w", c.ID, t.target, err)
		}
		total += int64(len(batch))
		rows, bytes = nil, 0
		return nil
	}
	if data != nil {
		r := bufio.NewReaderSize(data, 1<<16)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				row, perr := copytext.ParseLine(line, len(t.cols))
				if perr != nil {
					return 0, fmt.Errorf("load chunk %s into %s: row %d: %w", c.ID, t.target, total+int64(len(rows))+1, perr)
				}
				if len(rows) > 0 && (len(rows)+2 > s.cfg.DSQL.MaxTxRows || bytes+len(line) > s.cfg.DSQL.MaxTxBytes) {
					if err := write(false); err != nil {
						return 0, err
					}
				}
				rows = append(rows, row)
				bytes += len(line)
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return 0, fmt.Errorf("load chunk %s: reading the source: %w", c.ID, err)
			}
		}
	}
	if err := write(true); err != nil {
		return 0, err
	}
	return total, nil
}

// targetRelation describes a chunk's target table as a relation, its key
// being the target's primary key.
func (s *Sink) targetRelation(ctx context.Context, c *sink.BulkChunk) (*change.Relation, error) {
	rel := &change.Relation{Schema: c.Schema, Name: c.Table, ReplicaIdentity: 'n'}
	for _, name := range c.Columns {
		rel.Columns = append(rel.Columns, change.Column{Name: name, TypeMod: -1})
	}
	rows, err := s.conn.Query(ctx, `SELECT a.attname FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = $1::regclass AND i.indisprimary`, pgx.Identifier{c.Schema, c.Table}.Sanitize())
	if err != nil {
		return nil, fmt.Errorf("reading the primary key of %s.%s: %w", c.Schema, c.Table, err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading the primary key of %s.%s: %w", c.Schema, c.Table, err)
	}
	for _, k := range keys {
		i := rel.Column(k)
		if i < 0 {
			return nil, fmt.Errorf("load %s.%s: primary-key column %s is not loaded", c.Schema, c.Table, k)
		}
		rel.PrimaryKey = append(rel.PrimaryKey, i)
	}
	return rel, nil
}

var _ sink.TextLoader = (*Sink)(nil)

// TextOnly reports that the flavor loads COPY text only (aurora-dsql,
// whose columns may be text where the source's type is not).
func (s *Sink) TextOnly() bool { return s.dsqlMode() }
