package postgres

import (
	"context"
	"fmt"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// step runs one step of a plan in the open transaction.
func (s *Sink) step(ctx context.Context, st step) error {
	switch {
	case st.seg != nil:
		for _, ops := range st.seg.tables {
			if err := s.tableOps(ctx, ops); err != nil {
				return err
			}
		}
	case st.truncate != nil:
		return s.truncate(ctx, st.truncate)
	case st.move != nil:
		return s.move(ctx, st.move)
	}
	return nil
}

// tableOps runs one table's collapsed work: one statement per operation
// (one per column set for partial updates), deletes first; see plan for why
// the order is safe.
func (s *Sink) tableOps(ctx context.Context, ops *tableOps) error {
	t, err := s.table(ctx, s.tx, ops.rel)
	if err != nil {
		return err
	}
	if len(ops.keys) == 0 {
		return s.insert(ctx, t, ops.inserts, "insert into")
	}
	if s.citusMode() {
		return s.citusOps(ctx, t, ops)
	}
	deletes, fresh, upserts, updates := ops.split()
	if len(deletes) > 0 {
		args := arrays(nil, deletes, t.keys)
		if err := s.exec(ctx, deleteSQL(t), args, "delete from", t, len(deletes)); err != nil {
			return err
		}
	}
	if s.copyMinRows > 0 && len(fresh) >= s.copyMinRows && fastCopyAllowed(s.fastKey()) {
		if err := s.insertFresh(ctx, t, fresh); err != nil {
			return err
		}
	} else {
		upserts = append(fresh, upserts...)
	}
	if err := s.upsert(ctx, t, upserts); err != nil {
		return err
	}
	for _, g := range updates {
		args := arrays(nil, g.rows, t.keys)
		args = arrays(args, g.rows, g.cols)
		if err := s.exec(ctx, updateSQL(t, g.cols), args, "update", t, len(g.rows)); err != nil {
			return err
		}
	}
	return nil
}

// insert inserts (upserts, when t has a key) full rows, through COPY and a
// staging table for large sets, else from unnest arrays.
func (s *Sink) insert(ctx context.Context, t *table, rows []change.Row, what string) error {
	if len(rows) == 0 {
		return nil
	}
	if s.copyMinRows > 0 && len(rows) >= s.copyMinRows {
		if err := s.copyInsert(ctx, t, rows); err != nil {
			return fmt.Errorf("%s %s (%d rows, through COPY): %w", what, t.target, len(rows), err)
		}
		return nil
	}
	args := arrays(nil, rows, allColumns(len(t.cols)))
	return s.exec(ctx, unnestInsertSQL(t), args, what, t, len(rows))
}

// upsert writes full rows of keys the target probably holds (the final
// state of source UPDATEs, or of keys deleted and inserted again): one
// UPDATE by key — measured ~1.6x faster than INSERT … ON CONFLICT DO UPDATE,
// which first attempts an insertion per row — and, only when some keys were
// missing, the upsert of the whole set (idempotent for the rows just
// updated).
func (s *Sink) upsert(ctx context.Context, t *table, rows []change.Row) error {
	if len(rows) == 0 {
		return nil
	}
	set := nonKeyColumns(t)
	if len(set) == 0 || s.dsqlMode() {
		// Every column is key: nothing to update. On DSQL, whose limits
		// count modified rows, the upsert modifies each row once.
		return s.insert(ctx, t, rows, "upsert into")
	}
	var (
		n   int64
		err error
	)
	if s.copyMinRows > 0 && len(rows) >= s.copyMinRows {
		n, err = s.copyUpdate(ctx, t, set, rows)
	} else {
		args := arrays(nil, rows, t.keys)
		args = arrays(args, rows, set)
		n, err = s.execCount(ctx, updateSQL(t, set), args)
	}
	if err != nil {
		return fmt.Errorf("update %s (%d rows): %w", t.target, len(rows), err)
	}
	if n == int64(len(rows)) {
		return nil
	}
	return s.insert(ctx, t, rows, "upsert into")
}

func nonKeyColumns(t *table) []int {
	var set []int
	for i := range t.cols {
		if !isKey(t.keys, i) {
			set = append(set, i)
		}
	}
	return set
}

// execCount runs one data statement and returns the rows it affected.
func (s *Sink) execCount(ctx context.Context, sql string, args []any) (int64, error) {
	s.statements++
	tag, err := s.tx.Exec(ctx, sql, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// exec runs one data statement in the open transaction.
func (s *Sink) exec(ctx context.Context, sql string, args []any, what string, t *table, rows int) error {
	s.statements++
	if _, err := s.tx.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%s %s (%d rows): %w", what, t.target, rows, err)
	}
	return nil
}

// truncate runs a source TRUNCATE on the target tables.
func (s *Sink) truncate(ctx context.Context, tr *change.Truncate) error {
	tables := make([]*table, 0, len(tr.Relations))
	for _, rel := range tr.Relations {
		t, err := s.table(ctx, s.tx, rel)
		if err != nil {
			return err
		}
		tables = append(tables, t)
	}
	s.statements++
	if _, err := s.tx.Exec(ctx, truncateSQL(tables, tr)); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	return nil
}

// move changes the key of one row on the target with an UPDATE, which
// leaves its unchanged TOASTed columns as they are.
func (s *Sink) move(ctx context.Context, m *move) error {
	t, err := s.table(ctx, s.tx, m.rel)
	if err != nil {
		return err
	}
	var set []int
	for i, v := range m.new {
		if v.Kind != change.ValueUnchanged {
			set = append(set, i)
		}
	}
	if s.citusMode() {
		return s.exec(ctx, citusUpdateSQL(t, set), rowArgs(rowArgs(nil, m.old, t.keys), m.new, set), "update (key change)", t, 1)
	}
	args := arrays(nil, []change.Row{m.old}, t.keys)
	args = arrays(args, []change.Row{m.new}, set)
	return s.exec(ctx, updateSQL(t, set), args, "update (key change)", t, 1)
}

func allColumns(n int) []int {
	cols := make([]int, n)
	for i := range cols {
		cols[i] = i
	}
	return cols
}
