package trigger

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// Tx is one source transaction read from the change log: every change it
// made to the captured tables, in the order it made them.
type Tx struct {
	// XID is the transaction's full 64-bit id (xid8); its low 32 bits are
	// the xid PostgreSQL shows elsewhere.
	XID uint64
	// FirstID and LastID are the ordering ids of its first and last change.
	// The transactions of a poll are in ascending LastID order.
	FirstID, LastID int64
	// Rows is the number of its change-log rows.
	Rows int
	// Changes are inserts, updates, deletes and truncates, in id order
	// (nil until read: the source reads them a page at a time).
	// Relations are shared between changes of the same table layout, and
	// between polls while the layout does not change.
	Changes []change.Change
}

// Batch is what one poll read.
type Batch struct {
	// Prev is the position the poll started from.
	Prev Snapshot
	// Cur is the position after the poll: store it once every transaction
	// of Txs is durable, then pass it to the next Poll and to Ack.
	Cur Snapshot
	// Txs are the transactions visible in Cur but not in Prev, ordered by
	// their last ordering id (which agrees with commit order wherever two
	// transactions touched the same row).
	Txs []Tx
	// Rows is the number of change-log rows read.
	Rows int
}

// Reader polls the change log and turns its rows into pkg/change events.
// It caches the catalog description of each captured table and refreshes
// it on every poll that reads rows of the table. A Reader is not safe for
// concurrent use.
type Reader struct {
	tables map[uint32]*table
}

// NewReader returns a Reader with an empty catalog cache.
func NewReader() *Reader { return &Reader{tables: map[uint32]*table{}} }

// headsSQL reads, in one statement and therefore one MVCC snapshot, the
// current snapshot (or the given one, $2) and one row per transaction
// visible in it but not in $1 that wrote change-log rows: its id, its
// number of rows and its first and last ordering id. The first row carries
// the snapshot and no transaction.
const headsSQL = `
WITH s AS MATERIALIZED (SELECT coalesce($2::pg_snapshot, pg_current_snapshot()) AS cur)
SELECT NULL::text AS txid, s.cur::text, NULL::bigint, NULL::bigint, NULL::bigint FROM s
UNION ALL
(SELECT l.txid::text, NULL, count(*), min(l.id), max(l.id)
FROM cdcd.change_log l, s
WHERE l.txid >= pg_snapshot_xmin($1::pg_snapshot)
  AND pg_visible_in_snapshot(l.txid, s.cur)
  AND NOT pg_visible_in_snapshot(l.txid, $1::pg_snapshot)
GROUP BY l.txid)`

// rowsSQL reads the change-log rows of the transactions $1 in id order;
// pageSQL up to $3 rows of the one transaction $1 after id $2.
const (
	rowsSQL = `SELECT id, txid::text, relid, natts, op::text, old_row, new_row
FROM cdcd.change_log WHERE txid = ANY($1::text[]::xid8[]) ORDER BY id`
	pageSQL = `SELECT id, txid::text, relid, natts, op::text, old_row, new_row
FROM cdcd.change_log WHERE txid = $1::text::xid8 AND id > $2 ORDER BY txid, id LIMIT $3`
)

// logRow is one change-log row, its row texts split into fields.
type logRow struct {
	id       int64
	xid      uint64
	relid    uint32
	natts    int16
	op       byte
	old, new change.Row // nil when NULL
}

// Poll reads the transactions committed since prev (a position from Start,
// Export or an earlier Batch.Cur) and up to the current snapshot, which it
// returns as Batch.Cur, with all their changes. An idle database costs one
// query. prev must not be the zero Snapshot (ErrNoPosition). (The source
// itself reads a batch's changes a page at a time, Config.ReadRows.)
func (r *Reader) Poll(ctx context.Context, conn Conn, prev Snapshot) (Batch, error) {
	b, err := r.heads(ctx, conn, prev, nil)
	if err != nil {
		return Batch{}, err
	}
	return b, r.loadAll(ctx, conn, b.Txs)
}

// PollBetween reads again exactly what a Poll from prev returned as a Batch
// with Cur = cur, as long as nothing visible in prev's successor positions
// was acknowledged. After a crash that left only some transactions of a
// poll durable, it returns the same transactions in the same order, so the
// caller can skip those it holds.
func (r *Reader) PollBetween(ctx context.Context, conn Conn, prev, cur Snapshot) (Batch, error) {
	b, err := r.headsBetween(ctx, conn, prev, cur)
	if err != nil {
		return Batch{}, err
	}
	return b, r.loadAll(ctx, conn, b.Txs)
}

// headsBetween is PollBetween without the changes.
func (r *Reader) headsBetween(ctx context.Context, conn Conn, prev, cur Snapshot) (Batch, error) {
	if cur.IsZero() {
		return Batch{}, fmt.Errorf("poll change log: %w (cur)", ErrNoPosition)
	}
	c := cur.String()
	return r.heads(ctx, conn, prev, &c)
}

// heads reads the batch after prev (up to cur, or the current snapshot
// when nil) without the changes: the transactions in order, each with its
// number of rows and ordering ids.
func (r *Reader) heads(ctx context.Context, conn Conn, prev Snapshot, cur *string) (Batch, error) {
	if prev.IsZero() {
		return Batch{}, fmt.Errorf("poll change log: %w: call Start or Export first", ErrNoPosition)
	}
	b := Batch{Prev: prev}
	rows, err := conn.Query(ctx, headsSQL, prev.String(), cur)
	if err != nil {
		return Batch{}, fmt.Errorf("poll change log: %w", notInstalled(err))
	}
	defer rows.Close()
	first := true
	for rows.Next() {
		if first {
			first = false
			var text string
			if err := rows.Scan(nil, &text, nil, nil, nil); err != nil {
				return Batch{}, fmt.Errorf("poll change log: read snapshot: %w", err)
			}
			if b.Cur, err = ParseSnapshot(text); err != nil {
				return Batch{}, fmt.Errorf("poll change log: %w", err)
			}
			continue
		}
		var txid string
		var t Tx
		var n int64
		if err := rows.Scan(&txid, nil, &n, &t.FirstID, &t.LastID); err != nil {
			return Batch{}, fmt.Errorf("poll change log: %w", err)
		}
		if t.XID, err = strconv.ParseUint(txid, 10, 64); err != nil {
			return Batch{}, fmt.Errorf("poll change log: bad txid %q", txid)
		}
		t.Rows = int(n)
		b.Rows += t.Rows
		b.Txs = append(b.Txs, t)
	}
	if err := rows.Err(); err != nil {
		return Batch{}, fmt.Errorf("poll change log: %w", notInstalled(err))
	}
	if first {
		return Batch{}, fmt.Errorf("poll change log: no snapshot row")
	}
	slices.SortFunc(b.Txs, func(a, c Tx) int { return cmp.Compare(a.LastID, c.LastID) })
	return b, nil
}

// loadAll fills the changes of every transaction of txs.
func (r *Reader) loadAll(ctx context.Context, conn Conn, txs []Tx) error {
	for i := 0; i < len(txs); {
		n, err := r.loadGroup(ctx, conn, txs[i:], maxGroupRows)
		if err != nil {
			return err
		}
		i += n
	}
	return nil
}

// maxGroupRows bounds the rows of one loadGroup query in loadAll.
const maxGroupRows = 50000

// loadGroup fills the changes of the first transactions of txs whose rows
// add up to at most limit (at least the first one, whatever its size) with
// one query, and returns how many it filled.
func (r *Reader) loadGroup(ctx context.Context, conn Conn, txs []Tx, limit int) (int, error) {
	n, rows := 0, 0
	var ids []string
	index := map[uint64]int{}
	for n < len(txs) && (n == 0 || rows+txs[n].Rows <= limit) {
		rows += txs[n].Rows
		index[txs[n].XID] = n
		ids = append(ids, strconv.FormatUint(txs[n].XID, 10))
		n++
	}
	logRows, err := r.read(ctx, conn, rowsSQL, ids)
	if err != nil {
		return 0, err
	}
	for i := range n {
		txs[i].Changes = make([]change.Change, 0, txs[i].Rows)
	}
	for i := range logRows {
		lr := &logRows[i]
		c, err := r.convert(lr)
		if err != nil {
			return 0, fmt.Errorf("poll change log: row %d: %w", lr.id, err)
		}
		t := &txs[index[lr.xid]]
		t.Changes = append(t.Changes, c)
	}
	for i := range n {
		if len(txs[i].Changes) != txs[i].Rows {
			return 0, fmt.Errorf("poll change log: transaction %d has %d rows, %d were counted: were rows deleted by hand?",
				txs[i].XID, len(txs[i].Changes), txs[i].Rows)
		}
	}
	return n, nil
}

// loadPage reads up to limit changes of t after ordering id after, and
// returns them with the last one's id.
func (r *Reader) loadPage(ctx context.Context, conn Conn, t *Tx, after int64, limit int) ([]change.Change, int64, error) {
	logRows, err := r.read(ctx, conn, pageSQL, strconv.FormatUint(t.XID, 10), after, limit)
	if err != nil {
		return nil, 0, err
	}
	if len(logRows) == 0 {
		return nil, 0, fmt.Errorf("poll change log: transaction %d has no rows after id %d: were rows deleted by hand?", t.XID, after)
	}
	out := make([]change.Change, len(logRows))
	for i := range logRows {
		if out[i], err = r.convert(&logRows[i]); err != nil {
			return nil, 0, fmt.Errorf("poll change log: row %d: %w", logRows[i].id, err)
		}
	}
	return out, logRows[len(logRows)-1].id, nil
}

// read runs a query of change-log rows and refreshes the catalog entries
// of the tables they touch.
func (r *Reader) read(ctx context.Context, conn Conn, sql string, args ...any) ([]logRow, error) {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("poll change log: %w", notInstalled(err))
	}
	defer rows.Close()
	var logRows []logRow
	for rows.Next() {
		var (
			lr   logRow
			txid string
			op   string
		)
		if err := rows.Scan(&lr.id, &txid, &lr.relid, &lr.natts, &op, nil, nil); err != nil {
			return nil, fmt.Errorf("poll change log: %w", err)
		}
		x, err := strconv.ParseUint(txid, 10, 64)
		if err != nil || len(op) != 1 {
			return nil, fmt.Errorf("poll change log: row %d: bad txid %q or op %q", lr.id, txid, op)
		}
		lr.xid, lr.op = x, op[0]
		raw := rows.RawValues()
		if raw[5] != nil {
			if lr.old, err = parseRecord(raw[5], -1); err != nil {
				return nil, fmt.Errorf("poll change log: row %d old_row: %w", lr.id, err)
			}
		}
		if raw[6] != nil {
			if lr.new, err = parseRecord(raw[6], -1); err != nil {
				return nil, fmt.Errorf("poll change log: row %d new_row: %w", lr.id, err)
			}
		}
		logRows = append(logRows, lr)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("poll change log: %w", notInstalled(err))
	}
	if len(logRows) > 0 {
		if err := r.refresh(ctx, conn, logRows); err != nil {
			return nil, err
		}
	}
	return logRows, nil
}

// refresh reloads the catalog entries of the tables the rows touch, keeping
// cached entries (and their Relation pointers) whose layout did not change.
func (r *Reader) refresh(ctx context.Context, conn Conn, logRows []logRow) error {
	var oids []uint32
	seen := map[uint32]bool{}
	for _, lr := range logRows {
		if !seen[lr.relid] {
			seen[lr.relid] = true
			oids = append(oids, lr.relid)
		}
	}
	fresh, err := loadTables(ctx, conn, oids)
	if err != nil {
		return fmt.Errorf("poll change log: %w", err)
	}
	for _, oid := range oids {
		f, ok := fresh[oid]
		if !ok {
			return fmt.Errorf("poll change log: the table with OID %d was dropped while its changes waited in %s; "+
				"drain cdcd before dropping captured tables (delete its rows from %s to go on without them)", oid, logTable, logTable)
		}
		if old, ok := r.tables[oid]; ok && sameLayout(old, f) {
			continue
		}
		r.tables[oid] = f
	}
	return nil
}

// convert turns one change-log row into a change.
func (r *Reader) convert(lr *logRow) (change.Change, error) {
	t := r.tables[lr.relid]
	fields := -1
	switch {
	case lr.new != nil:
		fields = len(lr.new)
	case lr.old != nil && t.fullOld():
		fields = len(lr.old)
	}
	s, err := t.shapeFor(lr.natts, fields)
	if err != nil {
		return change.Change{}, err
	}
	c := change.Change{Relation: s.rel}
	switch lr.op {
	case 'I':
		c.Op = change.OpInsert
		if c.New, err = s.row(lr.new); err != nil {
			return change.Change{}, fmt.Errorf("new row: %w", err)
		}
	case 'U':
		c.Op = change.OpUpdate
		if c.New, err = s.row(lr.new); err != nil {
			return change.Change{}, fmt.Errorf("new row: %w", err)
		}
		if lr.old != nil {
			if c.Old, c.OldKeyOnly, err = s.old(lr.old, t.fullOld()); err != nil {
				return change.Change{}, fmt.Errorf("old row: %w", err)
			}
		}
	case 'D':
		c.Op = change.OpDelete
		if c.Old, c.OldKeyOnly, err = s.old(lr.old, t.fullOld()); err != nil {
			return change.Change{}, fmt.Errorf("old row: %w", err)
		}
	case 'T':
		c.Op = change.OpTruncate
		c.Relation = nil
		c.Truncate = &change.Truncate{Relations: []*change.Relation{s.rel}}
	default:
		return change.Change{}, fmt.Errorf("unknown op %q", lr.op)
	}
	return c, nil
}

// shapeFor is shape with fields unknown (-1) for rows without a full row
// text (key-only deletes, truncates): the columns not dropped at read time.
func (t *table) shapeFor(natts int16, fields int) (*shape, error) {
	if fields < 0 {
		fields = 0
		for _, a := range t.attrs {
			if a.num <= natts && !a.dropped {
				fields++
			}
		}
	}
	return t.shape(natts, fields)
}

// row maps the fields of a full row text onto the relation's columns.
func (s *shape) row(fields change.Row) (change.Row, error) {
	fields = oneNull(fields, len(s.col))
	if len(fields) != len(s.col) {
		return nil, fmt.Errorf("%w: %d fields, want %d", errRecord, len(fields), len(s.col))
	}
	if len(s.rel.Columns) == len(fields) {
		return fields, nil // nothing dropped or generated: the fields are the row
	}
	row := make(change.Row, len(s.rel.Columns))
	for i, c := range s.col {
		if c >= 0 {
			row[c] = fields[i]
		}
	}
	return row, nil
}

// old maps an old_row text: a whole old row (stored for tables captured
// with full old rows) or the old key.
func (s *shape) old(fields change.Row, fullMode bool) (change.Row, bool, error) {
	if fields == nil {
		return nil, false, fmt.Errorf("%w: missing", errRecord)
	}
	full := oneNull(fields, len(s.col))
	if len(full) == len(s.col) && (fullMode || len(fields) != len(s.key)) {
		row, err := s.row(full)
		return row, false, err
	}
	fields = oneNull(fields, len(s.key))
	if len(fields) != len(s.key) || len(s.key) == 0 {
		return nil, false, fmt.Errorf("%w: %d key fields, want %d (the key changed since Install? run it again)", errRecord, len(fields), len(s.key))
	}
	row := make(change.Row, len(s.rel.Columns)) // ValueAbsent everywhere
	for j, c := range s.key {
		if c < 0 {
			return nil, false, fmt.Errorf("a key column is no longer in the table")
		}
		row[c] = fields[j]
	}
	return row, true, nil
}

// oneNull resolves the ambiguity of "()": parsed as zero fields, it is one
// NULL field when one is expected.
func oneNull(fields change.Row, want int) change.Row {
	if len(fields) == 0 && want == 1 {
		return change.Row{change.Null}
	}
	return fields
}
