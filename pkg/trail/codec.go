package trail

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// Flag bits of CHANGE and MESSAGE bodies (see doc.go).
const (
	flagOld        = 1
	flagOldKeyOnly = 2
	flagNew        = 4

	flagCascade         = 1
	flagRestartIdentity = 2

	flagTransactional = 1
	flagContent       = 2
)

// The encoders append a record payload to b. They are pure and never fail:
// validateChange has checked the input before.

func appendSchema(b []byte, seq uint64, rel *change.Relation) []byte {
	b = append(b, byte(RecordSchema))
	b = binary.AppendUvarint(b, seq)
	b = binary.AppendUvarint(b, uint64(rel.OID))
	b = appendString(b, rel.Schema)
	b = appendString(b, rel.Name)
	b = append(b, rel.ReplicaIdentity)
	b = binary.AppendUvarint(b, uint64(len(rel.Columns)))
	for i := range rel.Columns {
		c := &rel.Columns[i]
		b = appendString(b, c.Name)
		b = binary.AppendUvarint(b, uint64(c.TypeOID))
		b = appendString(b, c.TypeName)
		b = binary.AppendVarint(b, int64(c.TypeMod))
		b = appendBool(b, c.Key)
	}
	b = binary.AppendUvarint(b, uint64(len(rel.PrimaryKey)))
	for _, k := range rel.PrimaryKey {
		b = binary.AppendUvarint(b, uint64(k))
	}
	return b
}

func appendTx(b []byte, t RecordType, seq uint64, tx *change.Tx) []byte {
	b = append(b, byte(t))
	b = binary.AppendUvarint(b, seq)
	b = binary.AppendUvarint(b, uint64(tx.XID))
	b = binary.AppendUvarint(b, uint64(tx.FinalLSN))
	b = binary.AppendUvarint(b, uint64(tx.CommitLSN))
	b = binary.AppendUvarint(b, uint64(tx.EndLSN))
	if tx.CommitTime.IsZero() {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = binary.AppendVarint(b, tx.CommitTime.Unix())
		b = binary.AppendUvarint(b, uint64(tx.CommitTime.Nanosecond()))
	}
	return appendString(b, tx.Origin)
}

func appendChange(b []byte, seq uint64, c *change.Change) []byte {
	if c.Op == change.OpMessage {
		b = append(b, byte(RecordMessage))
		b = binary.AppendUvarint(b, seq)
		b = binary.AppendUvarint(b, uint64(c.LSN))
		m := c.Message
		var flags byte
		if m.Transactional {
			flags |= flagTransactional
		}
		if m.Content != nil {
			flags |= flagContent
		}
		b = append(b, flags)
		b = appendString(b, m.Prefix)
		return appendBytes(b, m.Content)
	}
	b = append(b, byte(RecordChange))
	b = binary.AppendUvarint(b, seq)
	b = append(b, byte(c.Op))
	b = binary.AppendUvarint(b, uint64(c.LSN))
	if c.Op == change.OpTruncate {
		var flags byte
		if c.Truncate.Cascade {
			flags |= flagCascade
		}
		if c.Truncate.RestartIdentity {
			flags |= flagRestartIdentity
		}
		b = append(b, flags)
		b = binary.AppendUvarint(b, uint64(len(c.Truncate.Relations)))
		for _, r := range c.Truncate.Relations {
			b = binary.AppendUvarint(b, uint64(r.OID))
		}
		return b
	}
	b = binary.AppendUvarint(b, uint64(c.Relation.OID))
	var flags byte
	if c.Old != nil {
		flags |= flagOld
	}
	if c.OldKeyOnly {
		flags |= flagOldKeyOnly
	}
	if c.New != nil {
		flags |= flagNew
	}
	b = append(b, flags)
	if c.Old != nil {
		b = appendRow(b, c.Old)
	}
	if c.New != nil {
		b = appendRow(b, c.New)
	}
	return b
}

func appendRow(b []byte, row change.Row) []byte {
	b = binary.AppendUvarint(b, uint64(len(row)))
	for _, v := range row {
		b = append(b, byte(v.Kind))
		if v.HasData() {
			b = appendBytes(b, v.Data)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// validateChange rejects a change the trail could not read back correctly,
// before any of it is written.
func validateChange(c *change.Change) error {
	switch c.Op {
	case change.OpInsert, change.OpUpdate, change.OpDelete:
		if c.Relation == nil {
			return fmt.Errorf("%s change without a relation", c.Op)
		}
		n := len(c.Relation.Columns)
		if c.Old != nil && len(c.Old) != n {
			return fmt.Errorf("%s change on %s: old row has %d values, relation has %d columns", c.Op, c.Relation.QualifiedName(), len(c.Old), n)
		}
		if c.New != nil && len(c.New) != n {
			return fmt.Errorf("%s change on %s: new row has %d values, relation has %d columns", c.Op, c.Relation.QualifiedName(), len(c.New), n)
		}
		for _, row := range []change.Row{c.Old, c.New} {
			for _, v := range row {
				if v.Kind > change.ValueUnchanged {
					return fmt.Errorf("%s change on %s: unknown value kind %d", c.Op, c.Relation.QualifiedName(), v.Kind)
				}
			}
		}
	case change.OpTruncate:
		if c.Truncate == nil {
			return errors.New("truncate change without Truncate")
		}
		for _, r := range c.Truncate.Relations {
			if r == nil {
				return errors.New("truncate of a nil relation")
			}
		}
	case change.OpMessage:
		if c.Message == nil {
			return errors.New("message change without Message")
		}
	default:
		return fmt.Errorf("unknown change op %d", c.Op)
	}
	return nil
}

// decoder reads a payload; the first failure sticks in err and every later
// read returns zero, so decoding code checks once at the end and can never
// index out of range.
type decoder struct {
	b   []byte
	err error
	a   *blocks
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail("unexpected end of record")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.fail("value %d overflows 32 bits", v)
		return 0
	}
	return uint32(v)
}

// count reads a length that needs at least minBytes per element in the rest
// of the payload, so a garbage count can never drive a huge allocation.
func (d *decoder) count(minBytes int) int {
	v := d.uvarint()
	if v > uint64(len(d.b)/minBytes) {
		d.fail("count %d exceeds the record", v)
		return 0
	}
	return int(v)
}

// bytes returns a slice aliasing the payload.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length %d exceeds the record", n)
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) string() string { return string(d.bytes()) }

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad bool")
	return false
}

// peekRecord decodes only the type and sequence number of a payload.
func peekRecord(p []byte) (RecordType, uint64, error) {
	d := decoder{b: p}
	t := RecordType(d.byte())
	seq := d.uvarint()
	return t, seq, d.err
}

// decodeRecord decodes a payload, resolving relation OIDs through rels (which
// it does not modify: the caller adds a SCHEMA record's relation). Value data
// aliases p. Changes, rows and transactions come from a (nil: allocated one
// by one). It never panics, whatever p holds.
func decodeRecord(p []byte, rels map[uint32]*change.Relation, a *blocks) (Record, error) {
	d := decoder{b: p, a: a}
	rec := Record{Type: RecordType(d.byte()), Seq: d.uvarint()}
	switch rec.Type {
	case RecordSchema:
		rec.Relation = decodeRelation(&d)
	case RecordBegin, RecordCommit:
		rec.Tx = decodeTx(&d)
	case RecordChange:
		rec.Change = decodeChange(&d, rels)
	case RecordMessage:
		rec.Change = decodeMessage(&d)
	default:
		d.fail("unknown record type %d", rec.Type)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return Record{}, fmt.Errorf("decode %s record: %w", rec.Type, d.err)
	}
	return rec, nil
}

func decodeRelation(d *decoder) *change.Relation {
	rel := &change.Relation{
		OID:             d.uint32(),
		Schema:          d.string(),
		Name:            d.string(),
		ReplicaIdentity: d.byte(),
	}
	// A column takes at least 5 bytes: three lengths, a typmod, a key flag.
	if n := d.count(5); n > 0 {
		rel.Columns = make([]change.Column, n)
		for i := range rel.Columns {
			c := &rel.Columns[i]
			c.Name = d.string()
			c.TypeOID = d.uint32()
			c.TypeName = d.string()
			mod := d.varint()
			if mod != int64(int32(mod)) {
				d.fail("typmod %d overflows 32 bits", mod)
			}
			c.TypeMod = int32(mod)
			c.Key = d.bool()
		}
	}
	if n := d.count(1); n > 0 {
		rel.PrimaryKey = make([]int, n)
		for i := range rel.PrimaryKey {
			k := d.uvarint()
			if k >= uint64(len(rel.Columns)) {
				d.fail("primary key column %d out of range", k)
			}
			rel.PrimaryKey[i] = int(k)
		}
	}
	return rel
}

func decodeTx(d *decoder) *change.Tx {
	tx := d.a.tx()
	tx.XID = d.uint32()
	tx.FinalLSN = change.LSN(d.uvarint())
	tx.CommitLSN = change.LSN(d.uvarint())
	tx.EndLSN = change.LSN(d.uvarint())
	switch d.byte() {
	case 0:
	case 1:
		sec := d.varint()
		nsec := d.uvarint()
		if nsec >= uint64(time.Second) {
			d.fail("bad nanoseconds %d", nsec)
		}
		tx.CommitTime = time.Unix(sec, int64(nsec)).UTC()
	default:
		d.fail("bad time flag")
	}
	tx.Origin = d.string()
	return tx
}

func decodeChange(d *decoder, rels map[uint32]*change.Relation) *change.Change {
	c := d.a.change()
	c.Op, c.LSN = change.Op(d.byte()), change.LSN(d.uvarint())
	switch c.Op {
	case change.OpInsert, change.OpUpdate, change.OpDelete:
		oid := d.uint32()
		flags := d.byte()
		if d.err != nil {
			return nil
		}
		c.Relation = rels[oid]
		if c.Relation == nil {
			d.fail("relation OID %d has no SCHEMA record", oid)
			return nil
		}
		if flags&^(flagOld|flagOldKeyOnly|flagNew) != 0 {
			d.fail("bad change flags %#x", flags)
		}
		c.OldKeyOnly = flags&flagOldKeyOnly != 0
		if flags&flagOld != 0 {
			c.Old = decodeRow(d, len(c.Relation.Columns))
		}
		if flags&flagNew != 0 {
			c.New = decodeRow(d, len(c.Relation.Columns))
		}
	case change.OpTruncate:
		flags := d.byte()
		if flags&^(flagCascade|flagRestartIdentity) != 0 {
			d.fail("bad truncate flags %#x", flags)
		}
		t := &change.Truncate{Cascade: flags&flagCascade != 0, RestartIdentity: flags&flagRestartIdentity != 0}
		if n := d.count(1); n > 0 {
			t.Relations = make([]*change.Relation, n)
			for i := range t.Relations {
				oid := d.uint32()
				if t.Relations[i] = rels[oid]; t.Relations[i] == nil && d.err == nil {
					d.fail("relation OID %d has no SCHEMA record", oid)
				}
			}
		}
		c.Truncate = t
	default:
		d.fail("bad change op %d", c.Op)
	}
	return c
}

func decodeRow(d *decoder, columns int) change.Row {
	n := d.count(1)
	if d.err != nil {
		return nil
	}
	if n != columns {
		d.fail("row has %d values, relation has %d columns", n, columns)
		return nil
	}
	row := d.a.row(n)
	for i := range row {
		k := change.ValueKind(d.byte())
		switch k {
		case change.ValueAbsent, change.ValueNull, change.ValueUnchanged:
		case change.ValueText, change.ValueBinary:
			row[i].Data = d.bytes()
			if row[i].Data == nil && d.err == nil {
				row[i].Data = []byte{}
			}
		default:
			d.fail("bad value kind %d", k)
		}
		row[i].Kind = k
	}
	return row
}

func decodeMessage(d *decoder) *change.Change {
	c := &change.Change{Op: change.OpMessage, LSN: change.LSN(d.uvarint())}
	flags := d.byte()
	if flags&^(flagTransactional|flagContent) != 0 {
		d.fail("bad message flags %#x", flags)
	}
	m := &change.Message{Transactional: flags&flagTransactional != 0, Prefix: d.string()}
	m.Content = d.bytes()
	if flags&flagContent != 0 {
		if m.Content == nil && d.err == nil {
			m.Content = []byte{}
		}
	} else if len(m.Content) != 0 {
		d.fail("message content without its flag")
	} else {
		m.Content = nil
	}
	c.Message = m
	return c
}
