package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/change"
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
				row, perr := parseCopyText(line, len(t.cols))
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

// parseCopyText splits one line of COPY text format into n values,
// undoing its escapes (\N is NULL).
func parseCopyText(line []byte, n int) (change.Row, error) {
	if l := len(line); l > 0 && line[l-1] == '\n' {
		line = line[:l-1]
	}
	row := make(change.Row, 0, n)
	var field []byte
	null := false
	flush := func() {
		if null {
			row = append(row, change.Null)
		} else {
			row = append(row, change.Value{Kind: change.ValueText, Data: field})
		}
		field, null = nil, false
	}
	field = []byte{}
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case ch == '\t':
			flush()
			field = []byte{}
		case ch != '\\':
			field = append(field, ch)
		case i+1 >= len(line):
			return nil, errors.New("a backslash ends the line")
		default:
			i++
			switch e := line[i]; e {
			case 'N':
				null = true
			case 'b':
				field = append(field, '\b')
			case 'f':
				field = append(field, '\f')
			case 'n':
				field = append(field, '\n')
			case 'r':
				field = append(field, '\r')
			case 't':
				field = append(field, '\t')
			case 'v':
				field = append(field, '\v')
			case 'x':
				j := i + 1
				for j < len(line) && j < i+3 && isHex(line[j]) {
					j++
				}
				v, err := strconv.ParseUint(string(line[i+1:j]), 16, 8)
				if err != nil {
					return nil, fmt.Errorf("bad \\x escape: %w", err)
				}
				field = append(field, byte(v))
				i = j - 1
			case '0', '1', '2', '3', '4', '5', '6', '7':
				j := i
				for j < len(line) && j < i+3 && line[j] >= '0' && line[j] <= '7' {
					j++
				}
				v, _ := strconv.ParseUint(string(line[i:j]), 8, 16)
				field = append(field, byte(v))
				i = j - 1
			default:
				field = append(field, e)
			}
		}
	}
	flush()
	if len(row) != n {
		return nil, fmt.Errorf("%d values, the table has %d columns", len(row), n)
	}
	return row, nil
}

func isHex(b byte) bool {
	return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F')
}

var _ sink.TextLoader = (*Sink)(nil)

// TextOnly reports that the flavor loads COPY text only (aurora-dsql,
// whose columns may be text where the source's type is not).
func (s *Sink) TextOnly() bool { return s.dsqlMode() }
