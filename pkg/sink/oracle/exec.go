package oracle

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// step runs one step of a plan in the open transaction.
func (s *Sink) step(ctx context.Context, st step, snapshot bool) error {
	switch {
	case st.Segment != nil:
		for _, ops := range st.Segment.Tables {
			if err := s.tableOps(ctx, ops, snapshot); err != nil {
				return err
			}
		}
	case st.Truncate != nil:
		for _, rel := range st.Truncate.Relations {
			t, err := s.table(ctx, rel)
			if err != nil {
				return err
			}
			s.statements++
			if _, err := s.tx.ExecContext(ctx, truncateSQL(t.shape.name)); err != nil {
				return fmt.Errorf("truncate (as DELETE) %s: %w", t.display, err)
			}
		}
	case st.Move != nil:
		return s.move(ctx, st.Move)
	}
	return nil
}

// tableOps runs one table's collapsed work, one array execution per
// statement: DELETE, INSERT, UPDATE of full rows, UPDATE per set of sent
// columns. Snapshot rows are MERGEd.
func (s *Sink) tableOps(ctx context.Context, ops *tableOps, snapshot bool) error {
	t, err := s.table(ctx, ops.Rel)
	if err != nil {
		return err
	}
	w := split(ops)
	if len(w.deletes) > 0 {
		if _, err := s.run(ctx, t, "delete from", deleteSQL(&t.shape), w.deletes, nil, t.shape.keys); err != nil {
			return err
		}
	}
	if len(w.inserts) > 0 {
		if snapshot && len(t.shape.keys) > 0 {
			if err := s.merge(ctx, t, w.inserts); err != nil {
				return err
			}
		} else if err := s.insert(ctx, t, w.inserts); err != nil {
			return err
		}
	}
	if len(w.updates) > 0 {
		set := nonKey(t)
		n, err := s.run(ctx, t, "update", updateSQL(&t.shape, set), w.updates, set, t.shape.keys)
		if err != nil {
			return err
		}
		if n < int64(len(w.updates)) {
			// Some rows are not on the target (a replay, a snapshot that
			// missed them): MERGE the whole set, which is idempotent for the
			// rows just updated.
			if err := s.merge(ctx, t, w.updates); err != nil {
				return err
			}
		}
	}
	for _, g := range w.partial {
		if _, err := s.run(ctx, t, "update", updateSQL(&t.shape, g.Cols), g.Rows, g.Cols, t.shape.keys); err != nil {
			return err
		}
	}
	return nil
}

// insert runs a plain array INSERT; on ORA-00001 (the rows, or some, are
// already there: a replay) it MERGEs the same rows instead. The failed
// INSERT may have inserted the rows before the failing one (array DML
// keeps them); MERGE matches those and sets the same values again.
func (s *Sink) insert(ctx context.Context, t *table, rows []change.Row) error {
	all := allColumns(len(t.shape.cols))
	_, err := s.run(ctx, t, "insert into", insertSQL(&t.shape), rows, all, nil)
	if err == nil || len(t.shape.keys) == 0 || oraCode(err) != 1 {
		return err
	}
	s.log.Info("oracle sink: rows already present, merging instead", "table", t.display, "rows", len(rows))
	return s.merge(ctx, t, rows)
}

func (s *Sink) merge(ctx context.Context, t *table, rows []change.Row) error {
	_, err := s.run(ctx, t, "merge into", mergeSQL(&t.shape), rows, allColumns(len(t.shape.cols)), nil)
	return err
}

// move changes one row's key with an UPDATE, leaving its unchanged TOASTed
// columns as they are.
func (s *Sink) move(ctx context.Context, m *move) error {
	t, err := s.table(ctx, m.Rel)
	if err != nil {
		return err
	}
	var set []int
	for i, v := range m.New {
		if v.Kind != change.ValueUnchanged {
			set = append(set, i)
		}
	}
	// The SET binds come from the new row, the WHERE binds from the old.
	args, err := s.binds(t, []change.Row{m.New}, set, nil, false)
	if err != nil {
		return err
	}
	old, err := s.binds(t, []change.Row{m.Old}, nil, t.shape.keys, false)
	if err != nil {
		return err
	}
	s.statements++
	res, err := s.tx.ExecContext(ctx, updateSQL(&t.shape, set), append(args, old...)...)
	if err != nil {
		return fmt.Errorf("update (key change) %s, row with key %s: %w", t.display, keyText(t, m.Old), err)
	}
	if n, err := res.RowsAffected(); err == nil && n != 1 {
		return fmt.Errorf("update (key change) %s: no row with key %s on the target, and its unchanged TOASTed values exist only there", t.display, keyText(t, m.Old))
	}
	return nil
}

// run executes sql over rows as array binds (set columns, then where
// columns) and returns the rows affected. Rows with a LOB value larger than
// LOBInlineBytes go in a second execution whose LOB columns are bound as
// temporary LOBs. Errors name the table and, where the driver says which
// row failed, its key and the column Oracle named.
func (s *Sink) run(ctx context.Context, t *table, what, sql string, rows []change.Row, set, where []int) (int64, error) {
	inline, large := rows, []change.Row(nil)
	if t.hasLOB {
		inline, large = s.splitLOB(t, rows, set)
	}
	var total int64
	for i, part := range [][]change.Row{inline, large} {
		if len(part) == 0 {
			continue
		}
		args, err := s.binds(t, part, set, where, i == 1)
		if err != nil {
			return total, fmt.Errorf("%s %s: %w", what, t.display, err)
		}
		s.statements++
		res, err := s.tx.ExecContext(ctx, sql, args...)
		if err != nil {
			return total, s.rowError(t, what, part, err)
		}
		if n, err := res.RowsAffected(); err == nil {
			total += n
		}
	}
	return total, nil
}

// splitLOB separates rows with a LOB value past the inline limit.
func (s *Sink) splitLOB(t *table, rows []change.Row, set []int) (inline, large []change.Row) {
	for _, r := range rows {
		big := false
		for _, c := range set {
			if t.lob[c] && len(r[c].Data) > s.cfg.LOBInlineBytes {
				big = true
				break
			}
		}
		if big {
			large = append(large, r)
		} else {
			inline = append(inline, r)
		}
	}
	if large == nil {
		return rows, nil
	}
	return inline, large
}

// binds builds one typed array per bound column: the set columns, then the
// where columns. lob binds the LOB columns as temporary LOBs.
func (s *Sink) binds(t *table, rows []change.Row, set, where []int, lob bool) ([]any, error) {
	args := make([]any, 0, len(set)+len(where))
	for _, cols := range [2][]int{set, where} {
		for _, c := range cols {
			b := t.binders[c]
			asLOB := lob && t.lob[c]
			a := newColArray(b.kind, asLOB, len(rows))
			for _, r := range rows {
				if err := b.add(a, r[c], s.types, asLOB); err != nil {
					return nil, fmt.Errorf("row with key %s: %w", keyText(t, r), err)
				}
			}
			args = append(args, a.arg(b.kind, asLOB))
		}
	}
	return args, nil
}

// rowError names the failing row when the driver reports its offset in
// the array (godror's OraErr.Offset), and the table always.
func (s *Sink) rowError(t *table, what string, rows []change.Row, err error) error {
	var oo oraOffsetter
	if len(rows) > 1 && errors.As(err, &oo) && oo.Offset() >= 0 && oo.Offset() < len(rows) {
		return fmt.Errorf("%s %s (%d rows), row with key %s: %w", what, t.display, len(rows), keyText(t, rows[oo.Offset()]), err)
	}
	if len(rows) == 1 {
		return fmt.Errorf("%s %s, row with key %s: %w", what, t.display, keyText(t, rows[0]), err)
	}
	return fmt.Errorf("%s %s (%d rows, keys %s … %s): %w", what, t.display, len(rows), keyText(t, rows[0]), keyText(t, rows[len(rows)-1]), err)
}

// keyText renders a row's key for errors: (id=5, region=eu).
func keyText(t *table, r change.Row) string {
	if len(t.shape.keys) == 0 {
		return "(no key)"
	}
	parts := make([]string, 0, len(t.shape.keys))
	for _, k := range t.shape.keys {
		v := "?"
		if k < len(r) {
			v = r[k].String()
			if len(v) > 64 {
				v = v[:64] + "…"
			}
		}
		parts = append(parts, t.binders[k].name+"="+v)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func nonKey(t *table) []int {
	var set []int
	for i := range t.shape.cols {
		if !sink.IsKey(t.shape.keys, i) {
			set = append(set, i)
		}
	}
	return set
}

func allColumns(n int) []int {
	cols := make([]int, n)
	for i := range cols {
		cols[i] = i
	}
	return cols
}
