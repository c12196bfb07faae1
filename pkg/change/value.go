package change

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgtype"
)

// ValueKind is the state of a column value in a tuple.
type ValueKind uint8

// The value states. The zero value is ValueAbsent.
const (
	// ValueAbsent means the column was not sent: a non-key column of an
	// old-key tuple. It is neither NULL nor a value.
	ValueAbsent ValueKind = iota
	// ValueNull is SQL NULL.
	ValueNull
	// ValueText is a value in PostgreSQL's text output format.
	ValueText
	// ValueBinary is a value in PostgreSQL's binary (send) format.
	ValueBinary
	// ValueUnchanged is an unchanged TOASTed value the source did not send:
	// the target column must be left untouched, never set to NULL.
	ValueUnchanged
)

var valueKindNames = [...]string{"absent", "null", "text", "binary", "unchanged-toast"}

func (k ValueKind) String() string {
	if int(k) < len(valueKindNames) {
		return valueKindNames[k]
	}
	return "?"
}

// Value is one column value in wire form.
type Value struct {
	Kind ValueKind
	// Data is the wire form for ValueText and ValueBinary; nil otherwise.
	Data []byte
}

// Text returns a text-format value.
func Text(s string) Value { return Value{Kind: ValueText, Data: []byte(s)} }

// Null is the SQL NULL value.
var Null = Value{Kind: ValueNull}

// Unchanged is the unchanged-TOAST placeholder.
var Unchanged = Value{Kind: ValueUnchanged}

// IsNull reports whether the value is SQL NULL.
func (v Value) IsNull() bool { return v.Kind == ValueNull }

// HasData reports whether the value carries data (text or binary).
func (v Value) HasData() bool { return v.Kind == ValueText || v.Kind == ValueBinary }

// Decode converts the value into a Go value using pgx's type map for the
// column's type OID: int64 for int8, pgtype.Numeric for numeric, time.Time for
// timestamptz, and so on (see pgtype). NULL decodes to nil. Absent and
// unchanged values are an error: they have no value to convert.
func (v Value) Decode(m *pgtype.Map, typeOID uint32) (any, error) {
	var format int16
	switch v.Kind {
	case ValueNull:
		return nil, nil
	case ValueText:
		format = pgtype.TextFormatCode
	case ValueBinary:
		format = pgtype.BinaryFormatCode
	default:
		return nil, fmt.Errorf("decode %s value: it carries no data", v.Kind)
	}
	t, ok := m.TypeForOID(typeOID)
	if !ok {
		// Unknown types (enums, domains of unknown OIDs, extensions) keep
		// their text form.
		if format == pgtype.TextFormatCode {
			return string(v.Data), nil
		}
		return nil, fmt.Errorf("decode binary value of unknown type OID %d", typeOID)
	}
	val, err := t.Codec.DecodeValue(m, typeOID, format, v.Data)
	if err != nil {
		return nil, fmt.Errorf("decode value of type %s: %w", t.Name, err)
	}
	return val, nil
}

// String is for logs and dumps: text values verbatim, binary as hex, other
// states by name.
func (v Value) String() string {
	switch v.Kind {
	case ValueText:
		return string(v.Data)
	case ValueBinary:
		return fmt.Sprintf("\\x%x", v.Data)
	default:
		return "<" + v.Kind.String() + ">"
	}
}
