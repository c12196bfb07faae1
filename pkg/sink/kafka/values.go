package kafka

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/pgarray"
)

// valueKind is how a column's values are written (see doc.go, Values).
type valueKind uint8

const (
	kindString valueKind = iota
	kindBool
	kindInt
	kindFloat
	kindNumeric // exact digits as a string
	kindBytea
	kindJSON
	kindTimestamptz
	kindTimestamp
	kindDate
	kindTime
	kindArray
)

// Type OIDs of pg_catalog's built-in types.
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidOID         = 26
	oidXID         = 28
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidBoxArray    = 1020
	oidDate        = 1082
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidJSONB       = 3802
)

// kindOf maps a type OID to its value kind; elem is the element type of an
// array (0 otherwise).
func kindOf(m *pgtype.Map, oid uint32) (k valueKind, elem uint32) {
	switch oid {
	case oidBool:
		return kindBool, 0
	case oidInt2, oidInt4, oidInt8, oidOID, oidXID:
		return kindInt, 0
	case oidFloat4, oidFloat8:
		return kindFloat, 0
	case oidNumeric:
		return kindNumeric, 0
	case oidBytea:
		return kindBytea, 0
	case oidJSON, oidJSONB:
		return kindJSON, 0
	case oidTimestamptz:
		return kindTimestamptz, 0
	case oidTimestamp:
		return kindTimestamp, 0
	case oidDate:
		return kindDate, 0
	case oidTime:
		return kindTime, 0
	case oidBoxArray: // its elements are separated by ';', keep the text
		return kindString, 0
	}
	if t, ok := m.TypeForOID(oid); ok {
		if ac, ok := t.Codec.(*pgtype.ArrayCodec); ok && ac.ElementType != nil {
			return kindArray, ac.ElementType.OID
		}
	}
	return kindString, 0
}

// values writes column values as JSON. It is not safe for concurrent use.
type values struct {
	types *pgtype.Map
	// arrays and array walk array values (reused: no allocation per array).
	arrays pgarray.Parser
	array  jsonArray
}

func newValues() *values { return &values{types: pgtype.NewMap()} }

// toText converts a binary-format value to PostgreSQL's text form.
func (e *values) toText(oid uint32, v change.Value) ([]byte, error) {
	if v.Kind != change.ValueBinary {
		return v.Data, nil
	}
	val, err := v.Decode(e.types, oid)
	if err != nil {
		return nil, err
	}
	out, err := e.types.Encode(oid, pgtype.TextFormatCode, val, nil)
	if err != nil {
		return nil, fmt.Errorf("encode value of type OID %d as text: %w", oid, err)
	}
	return out, nil
}

// appendValue appends the JSON form of a value with data (text or binary).
func (e *values) appendValue(dst []byte, oid uint32, k valueKind, elem uint32, v change.Value) ([]byte, error) {
	if v.Kind == change.ValueNull {
		return append(dst, "null"...), nil
	}
	s, err := e.toText(oid, v)
	if err != nil {
		return dst, err
	}
	return e.appendText(dst, oid, k, elem, s)
}

// appendText appends the JSON form of a value in PostgreSQL's text format.
func (e *values) appendText(dst []byte, oid uint32, k valueKind, elem uint32, s []byte) ([]byte, error) {
	switch k {
	case kindBool:
		if len(s) > 0 && s[0] == 't' {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case kindInt:
		if !isInteger(s) {
			return dst, fmt.Errorf("integer value %q is not a number", s)
		}
		return append(dst, s...), nil
	case kindFloat:
		if !isJSONNumber(s) { // NaN, Infinity, -Infinity
			return appendString(dst, s), nil
		}
		return append(dst, s...), nil
	case kindBytea:
		b, err := decodeBytea(s)
		if err != nil {
			return dst, err
		}
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, b)
		return append(dst, '"'), nil
	case kindJSON:
		return append(dst, s...), nil
	case kindTimestamptz, kindTimestamp, kindDate, kindTime:
		return e.appendTime(dst, oid, k, s)
	case kindArray:
		ek, ee := kindOf(e.types, elem)
		return e.appendArray(dst, s, func(dst, el []byte) ([]byte, error) {
			return e.appendText(dst, elem, ek, ee, el)
		})
	default: // kindString, kindNumeric
		return appendString(dst, s), nil
	}
}

// appendTime writes date/time values the way Debezium's default
// (adaptive_time_microseconds) mode does, except that infinities are strings.
func (e *values) appendTime(dst []byte, oid uint32, k valueKind, s []byte) ([]byte, error) {
	if out, ok := appendTimeFast(dst, k, s); ok {
		return out, nil
	}
	return e.appendTimeDecoded(dst, oid, k, s)
}

// appendTimeDecoded is appendTime through pgtype's decoder: every input
// PostgreSQL can print, at the cost of an interface value per call.
func (e *values) appendTimeDecoded(dst []byte, oid uint32, k valueKind, s []byte) ([]byte, error) {
	switch string(s) {
	case "infinity", "-infinity":
		return appendString(dst, s), nil
	}
	val, err := change.Value{Kind: change.ValueText, Data: s}.Decode(e.types, oid)
	if err != nil {
		return dst, err
	}
	switch v := val.(type) {
	case time.Time:
		switch k {
		case kindTimestamptz:
			dst = append(dst, '"')
			dst = v.UTC().AppendFormat(dst, time.RFC3339Nano)
			return append(dst, '"'), nil
		case kindTimestamp:
			return strconv.AppendInt(dst, v.UnixMicro(), 10), nil
		default: // date
			return strconv.AppendInt(dst, floorDiv(v.Unix(), 86400), 10), nil
		}
	case pgtype.Time:
		return strconv.AppendInt(dst, v.Microseconds, 10), nil
	case pgtype.InfinityModifier:
		return appendString(dst, []byte(v.String())), nil
	}
	return appendString(dst, s), nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// decodeBytea decodes bytea's text output, hex ("\x0a0b") or escape format.
func decodeBytea(s []byte) ([]byte, error) {
	if len(s) >= 2 && s[0] == '\\' && s[1] == 'x' {
		b := make([]byte, hex.DecodedLen(len(s)-2))
		if _, err := hex.Decode(b, s[2:]); err != nil {
			return nil, fmt.Errorf("decode bytea: %w", err)
		}
		return b, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b = append(b, s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\\' {
			b = append(b, '\\')
			i++
			continue
		}
		if i+4 > len(s) {
			return nil, fmt.Errorf("decode bytea: truncated escape at byte %d", i)
		}
		n, err := strconv.ParseUint(string(s[i+1:i+4]), 8, 8)
		if err != nil {
			return nil, fmt.Errorf("decode bytea: bad escape at byte %d", i)
		}
		b = append(b, byte(n))
		i += 3
	}
	return b, nil
}

func isInteger(s []byte) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isJSONNumber reports whether PostgreSQL's float text is a valid JSON
// number (it is, except for NaN and the infinities).
func isJSONNumber(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	c := s[0]
	if c == '-' && len(s) > 1 {
		c = s[1]
	}
	return c >= '0' && c <= '9'
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 is kept byte for
// byte (PostgreSQL's text is valid in the database encoding).
func appendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
