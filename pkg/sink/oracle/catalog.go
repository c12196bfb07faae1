package oracle

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// table is what the sink knows of one relation's target table.
type table struct {
	shape   tableShape
	display string    // unquoted schema.table for messages
	binders []*binder // one per relation column
	lob     []bool    // columns bound as temporary LOBs past LOBInlineBytes
	hasLOB  bool
}

// columnsSQL lists a table's columns. Binds: schema ("" is the current
// one), table.
const columnsSQL = `SELECT COLUMN_NAME, DATA_TYPE, NVL(DATA_PRECISION, -1), NVL(DATA_SCALE, -1), NULLABLE
FROM ALL_TAB_COLUMNS
WHERE OWNER = NVL(:1, SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA')) AND TABLE_NAME = :2
ORDER BY COLUMN_ID`

// querier is a session or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// targetColumns reads a table's columns by Oracle name; nil when the table
// does not exist (or the user cannot see it).
func (s *Sink) targetColumns(ctx context.Context, q querier, name string) (map[string]targetColumn, error) {
	rows, err := q.QueryContext(ctx, columnsSQL, s.schema, name)
	if err != nil {
		return nil, fmt.Errorf("reading the columns of target table %s: %w", s.qualify(name), err)
	}
	defer rows.Close()
	cols := map[string]targetColumn{}
	for rows.Next() {
		var (
			c        targetColumn
			nullable string
		)
		if err := rows.Scan(&c.Name, &c.DataType, &c.Precision, &c.Scale, &nullable); err != nil {
			return nil, fmt.Errorf("reading the columns of target table %s: %w", s.qualify(name), err)
		}
		c.Nullable = nullable == "Y"
		cols[c.Name] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the columns of target table %s: %w", s.qualify(name), err)
	}
	if len(cols) == 0 {
		return nil, nil
	}
	return cols, nil
}

// table returns the target table of rel, reading the catalog on first use
// of rel (a relation is one schema version of a source table).
func (s *Sink) table(ctx context.Context, rel *change.Relation) (*table, error) {
	if t := s.tables[rel]; t != nil {
		return t, nil
	}
	name, err := s.cfg.Case.ident(rel.Name)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", rel.QualifiedName(), err)
	}
	cols, err := s.targetColumns(ctx, s.tx, name)
	if err != nil {
		return nil, err
	}
	if cols == nil {
		return nil, fmt.Errorf("target table %s does not exist on sink %q (or the user cannot see it): create it, or let schema.create: true make it with a snapshot",
			s.qualify(name), s.cfg.Name)
	}
	t, err := newTable(s.cfg, s.qualify(name), rel, cols)
	if err != nil {
		return nil, fmt.Errorf("target table %s on sink %q: %w", s.qualify(name), s.cfg.Name, err)
	}
	s.tables[rel] = t
	return t, nil
}

// newTable pairs the relation's columns with the target's and picks the
// binds. Every source column must exist on the target, named by the case
// rule; extra target columns are left to their defaults.
func newTable(cfg Config, name string, rel *change.Relation, cols map[string]targetColumn) (*table, error) {
	t := &table{shape: tableShape{name: name, keys: rel.KeyColumns()}, display: strings.ReplaceAll(name, `"`, "")}
	var missing, bad []string
	for i, c := range rel.Columns {
		on, err := cfg.Case.ident(c.Name)
		if err != nil {
			return nil, err
		}
		tc, ok := cols[on]
		if !ok {
			missing = append(missing, quote(on))
			continue
		}
		b, err := newBinder(c, tc, sink.IsKey(t.shape.keys, i), cfg.EmptyString)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		t.shape.cols = append(t.shape.cols, quote(on))
		t.binders = append(t.binders, b)
		t.lob = append(t.lob, tc.isLOB())
		t.hasLOB = t.hasLOB || tc.isLOB()
	}
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("has no column %s (source table %s has it): add it to the target", strings.Join(missing, ", "), rel.QualifiedName()))
	}
	problems = append(problems, bad...)
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return t, nil
}
