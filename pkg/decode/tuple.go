package decode

import (
	"fmt"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// emptyData is the Data of zero-length values when a tuple holds no bytes at
// all: non-nil like change.Text(""), and safe to share since it has no
// capacity.
var emptyData = []byte{}

// insert: Int32 relation OID, Byte1('N'), TupleData.
func (d *Decoder) insert(walStart change.LSN, r *reader) (Event, error) {
	rel, err := d.rowRelation('I', r)
	if err != nil {
		return Event{}, err
	}
	off := r.off
	if m := r.uint8(); m != 'N' {
		return Event{}, markerErr('I', r, off, m, "'N'")
	}
	row := d.rows(len(rel.Columns))
	if err := parseTuple('I', r, rel, row, false); err != nil {
		return Event{}, err
	}
	if err := readErr('I', r); err != nil {
		return Event{}, err
	}
	return d.rowChange(change.OpInsert, walStart, rel, nil, false, row, row), nil
}

// update: Int32 relation OID, optionally Byte1('K') or Byte1('O') and the old
// TupleData, then Byte1('N') and the new TupleData.
func (d *Decoder) update(walStart change.LSN, r *reader) (Event, error) {
	rel, err := d.rowRelation('U', r)
	if err != nil {
		return Event{}, err
	}
	n := len(rel.Columns)
	u := change.Change{Op: change.OpUpdate, LSN: walStart, Relation: rel}
	off := r.off
	var rows change.Row
	switch m := r.uint8(); m {
	case 'K', 'O':
		// One allocation for both rows; capacities are clipped so that
		// appending to one can never write into the other.
		rows = d.rows(2 * n)
		u.Old, u.New = rows[:n:n], rows[n:]
		u.OldKeyOnly = m == 'K'
		if err := parseTuple('U', r, rel, u.Old, u.OldKeyOnly); err != nil {
			return Event{}, err
		}
		off = r.off
		if m := r.uint8(); m != 'N' {
			return Event{}, markerErr('U', r, off, m, "'N'")
		}
	case 'N':
		rows = d.rows(n)
		u.New = rows
	default:
		return Event{}, markerErr('U', r, off, m, "'K', 'O' or 'N'")
	}
	if err := parseTuple('U', r, rel, u.New, false); err != nil {
		return Event{}, err
	}
	if err := readErr('U', r); err != nil {
		return Event{}, err
	}
	return d.rowChange(change.OpUpdate, walStart, rel, u.Old, u.OldKeyOnly, u.New, rows), nil
}

// delete: Int32 relation OID, Byte1('K') or Byte1('O'), old TupleData.
func (d *Decoder) delete(walStart change.LSN, r *reader) (Event, error) {
	rel, err := d.rowRelation('D', r)
	if err != nil {
		return Event{}, err
	}
	off := r.off
	m := r.uint8()
	if m != 'K' && m != 'O' {
		return Event{}, markerErr('D', r, off, m, "'K' or 'O'")
	}
	row := d.rows(len(rel.Columns))
	if err := parseTuple('D', r, rel, row, m == 'K'); err != nil {
		return Event{}, err
	}
	if err := readErr('D', r); err != nil {
		return Event{}, err
	}
	return d.rowChange(change.OpDelete, walStart, rel, row, m == 'K', nil, row), nil
}

// rows returns n zero values for the rows of a change: new ones, or the
// borrowing Decoder's buffer.
func (d *Decoder) rows(n int) change.Row {
	if !d.borrow {
		return make(change.Row, n)
	}
	if cap(d.vals) < n {
		d.vals = make(change.Row, n)
	}
	rows := d.vals[:n]
	clear(rows) // no Data left from the previous change, nor a pointer into its message
	return rows
}

// rowChange returns the event of a decoded row change whose values, all in
// rows, alias the message. Unless the Decoder borrows, their Data moves to a
// buffer of their own and the Change is a new one.
func (d *Decoder) rowChange(op change.Op, lsn change.LSN, rel *change.Relation, oldRow change.Row, oldKeyOnly bool, newRow, rows change.Row) Event {
	if !d.borrow {
		copyData(rows)
		return Event{Kind: EventChange, Change: &change.Change{
			Op: op, LSN: lsn, Relation: rel, Old: oldRow, OldKeyOnly: oldKeyOnly, New: newRow}}
	}
	// Field by field: cheaper than copying a composite literal.
	c := &d.cur
	c.Op, c.LSN, c.Relation = op, lsn, rel
	c.Old, c.OldKeyOnly, c.New = oldRow, oldKeyOnly, newRow
	c.Truncate, c.Message = nil, nil
	return Event{Kind: EventChange, Change: c}
}

// rowRelation checks that a row change may come now and reads its relation.
func (d *Decoder) rowRelation(t byte, r *reader) (*change.Relation, error) {
	if d.tx == nil {
		return nil, msgErr(t, fmt.Errorf("%w: %s outside a transaction", ErrOutOfOrder, msgName(t)))
	}
	oid := r.uint32()
	if r.failed() {
		return nil, readErr(t, r)
	}
	rel, ok := d.relations[oid]
	if !ok {
		return nil, offErr(t, 1, fmt.Errorf("%w: %d", ErrUnknownRelation, oid))
	}
	return rel, nil
}

// markerErr reports an unexpected tuple marker byte m read at off.
func markerErr(t byte, r *reader, off int, m byte, want string) error {
	if r.failed() {
		return readErr(t, r)
	}
	return offErr(t, off, fmt.Errorf("%w: tuple marker %q, want %s", ErrMalformed, m, want))
}

// parseTuple reads a TupleData (Int16 column count, then per column a kind
// byte and, for 't' and 'b', an Int32 length and the bytes) into row, which
// has one slot per column of rel. Data slices alias the message: copyData
// must follow. In an old-key tuple, a non-key column sent as 'n' is
// ValueAbsent, not NULL.
func parseTuple(t byte, r *reader, rel *change.Relation, row change.Row, oldKey bool) error {
	off := r.off
	n := int(r.uint16())
	if r.failed() {
		return readErr(t, r)
	}
	if n != len(row) {
		return offErr(t, off, fmt.Errorf("%w: tuple has %d columns, relation %s (OID %d) has %d",
			ErrMalformed, n, rel.QualifiedName(), rel.OID, len(row)))
	}
	for i := range row {
		off := r.off
		v := &row[i]
		switch k := r.uint8(); k {
		case 'n':
			v.Kind = change.ValueNull
			if oldKey && !rel.Columns[i].Key {
				v.Kind = change.ValueAbsent
			}
		case 'u':
			v.Kind = change.ValueUnchanged
		case 't', 'b':
			v.Kind = change.ValueText
			if k == 'b' {
				v.Kind = change.ValueBinary
			}
			l := int32(r.uint32())
			if l < 0 && !r.failed() {
				return offErr(t, off+1, fmt.Errorf("%w: column %d length %d", ErrMalformed, i, l))
			}
			v.Data = r.bytes(int(l))
		default:
			if r.failed() {
				return readErr(t, r)
			}
			return offErr(t, off, fmt.Errorf("%w: column %d kind %q, want 'n', 'u', 't' or 'b'", ErrMalformed, i, k))
		}
		if r.failed() {
			return readErr(t, r)
		}
	}
	return nil
}

// copyData moves the Data of every value of rows into one new buffer, so the
// rows no longer alias the caller's message.
func copyData(rows change.Row) {
	total := 0
	for i := range rows {
		total += len(rows[i].Data)
	}
	buf := emptyData
	if total > 0 {
		buf = make([]byte, total)
	}
	off := 0
	for i := range rows {
		v := &rows[i]
		if v.Kind != change.ValueText && v.Kind != change.ValueBinary {
			continue
		}
		n := copy(buf[off:], v.Data)
		v.Data = buf[off : off+n : off+n]
		off += n
	}
}
