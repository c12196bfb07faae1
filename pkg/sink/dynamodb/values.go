package dynamodb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// valueKind is how a column's values are written (see doc.go, Values).
type valueKind uint8

const (
	kindString valueKind = iota
	kindBool
	kindNumber // integers, numeric, floats: N when DynamoDB can hold it exactly
	kindBytea
	kindJSON
	kindTimestamptz
	kindTimestamp
	kindTimetz
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
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidTimetz      = 1266
	oidNumeric     = 1700
	oidJSONB       = 3802
)

// kindOf maps a type OID to its value kind; elem is the element type of an
// array (0 otherwise).
func kindOf(m *pgtype.Map, oid uint32) (k valueKind, elem uint32) {
	switch oid {
	case oidBool:
		return kindBool, 0
	case oidInt2, oidInt4, oidInt8, oidOID, oidXID, oidNumeric, oidFloat4, oidFloat8:
		return kindNumber, 0
	case oidBytea:
		return kindBytea, 0
	case oidJSON, oidJSONB:
		return kindJSON, 0
	case oidTimestamptz:
		return kindTimestamptz, 0
	case oidTimestamp:
		return kindTimestamp, 0
	case oidTimetz:
		return kindTimetz, 0
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

// converter turns column values into attribute values. It is not safe for
// concurrent use.
type converter struct {
	types    *pgtype.Map
	jsonText bool
}

func newConverter(jsonText bool) *converter {
	return &converter{types: pgtype.NewMap(), jsonText: jsonText}
}

// toText converts a binary-format value to PostgreSQL's text form.
func (cv *converter) toText(oid uint32, v change.Value) ([]byte, error) {
	if v.Kind != change.ValueBinary {
		return v.Data, nil
	}
	val, err := v.Decode(cv.types, oid)
	if err != nil {
		return nil, err
	}
	out, err := cv.types.Encode(oid, pgtype.TextFormatCode, val, nil)
	if err != nil {
		return nil, fmt.Errorf("encode value of type OID %d as text: %w", oid, err)
	}
	return out, nil
}

// value converts one column value (NULL, text or binary).
func (cv *converter) value(oid uint32, v change.Value) (types.AttributeValue, error) {
	if v.Kind == change.ValueNull {
		return &types.AttributeValueMemberNULL{Value: true}, nil
	}
	if !v.HasData() {
		return nil, fmt.Errorf("a %s value has no data", v.Kind)
	}
	if oid == oidBytea && v.Kind == change.ValueBinary {
		return &types.AttributeValueMemberB{Value: bytes.Clone(v.Data)}, nil
	}
	s, err := cv.toText(oid, v)
	if err != nil {
		return nil, err
	}
	k, elem := kindOf(cv.types, oid)
	return cv.fromText(oid, k, elem, s)
}

// fromText converts PostgreSQL's text form of a value of kind k.
func (cv *converter) fromText(oid uint32, k valueKind, elem uint32, s []byte) (types.AttributeValue, error) {
	switch k {
	case kindBool:
		switch string(s) {
		case "t", "true":
			return &types.AttributeValueMemberBOOL{Value: true}, nil
		case "f", "false":
			return &types.AttributeValueMemberBOOL{Value: false}, nil
		}
		return nil, fmt.Errorf("bool %q is not t or f", s)
	case kindNumber:
		if exactNumber(s) {
			return &types.AttributeValueMemberN{Value: string(s)}, nil
		}
		return &types.AttributeValueMemberS{Value: string(s)}, nil // NaN, ±Infinity, > 38 digits
	case kindBytea:
		val, err := change.Value{Kind: change.ValueText, Data: s}.Decode(cv.types, oidBytea)
		if err != nil {
			return nil, err
		}
		b, _ := val.([]byte)
		if b == nil {
			b = []byte{}
		}
		return &types.AttributeValueMemberB{Value: b}, nil
	case kindJSON:
		if cv.jsonText {
			return &types.AttributeValueMemberS{Value: string(s)}, nil
		}
		return jsonValue(s)
	case kindTimestamptz:
		return &types.AttributeValueMemberS{Value: isoTimestamp(s, true)}, nil
	case kindTimestamp:
		return &types.AttributeValueMemberS{Value: isoTimestamp(s, false)}, nil
	case kindTimetz:
		return &types.AttributeValueMemberS{Value: string(isoOffset(bytes.Clone(s)))}, nil
	case kindArray:
		ek, eelem := kindOf(cv.types, elem)
		return parseArray(s, func(el []byte) (types.AttributeValue, error) {
			return cv.fromText(elem, ek, eelem, el)
		})
	}
	return &types.AttributeValueMemberS{Value: string(s)}, nil
}

// exactNumber reports whether DynamoDB's N holds the decimal s exactly: at
// most 38 significant digits, magnitude within 1E-130 .. 9.99…E+125.
// NaN, Infinity, negative zero (a float's "-0": N has no sign of zero)
// and anything that is not a plain decimal are not.
func exactNumber(s []byte) bool {
	i := 0
	neg := false
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		neg = s[i] == '-'
		i++
	}
	n, point, first, last, exp := 0, -1, -1, -1, 0
loop:
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case isDigit(c):
			if c != '0' {
				if first < 0 {
					first = n
				}
				last = n
			}
			n++
		case c == '.' && point < 0:
			point = n
		case (c == 'e' || c == 'E') && n > 0:
			e, err := strconv.Atoi(string(s[i+1:]))
			if err != nil {
				return false
			}
			exp = e
			break loop
		default:
			return false
		}
	}
	if n == 0 {
		return false
	}
	if first < 0 {
		return !neg // zero
	}
	if point < 0 {
		point = n
	}
	e := point - first - 1 + exp // decimal exponent of the first significant digit
	return last-first+1 <= 38 && e >= -130 && e <= 125
}

// isoTimestamp turns PostgreSQL's ISO-style timestamp text ("2024-05-01
// 10:00:00.5+02") into ISO-8601 ("2024-05-01T10:00:00.5+02:00"). Values it
// does not recognize (infinity, BC dates) keep their text.
func isoTimestamp(s []byte, tz bool) string {
	if len(s) < 19 || s[10] != ' ' || bytes.HasSuffix(s, []byte(" BC")) {
		return string(s)
	}
	out := bytes.Clone(s)
	out[10] = 'T'
	if tz {
		out = isoOffset(out)
	}
	return string(out)
}

// isoOffset completes a trailing "+HH" UTC offset to "+HH:00".
func isoOffset(s []byte) []byte {
	n := len(s)
	if n >= 3 && (s[n-3] == '+' || s[n-3] == '-') && isDigit(s[n-2]) && isDigit(s[n-1]) {
		return append(s, ":00"...)
	}
	return s
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// jsonValue converts a JSON document into DynamoDB's document types: an
// object is an M, an array an L, their members N, S, BOOL, NULL, M, L. A
// document that is a scalar ("x", 1, true, null), or holds a number N
// cannot hold exactly (over 38 significant digits, beyond 1E±125), is
// written whole as its JSON text, an S: so for a json column an S is always
// JSON text, a JSON null is never confused with SQL NULL, and no number
// silently turns into a string inside a map.
func jsonValue(s []byte) (types.AttributeValue, error) {
	d := json.NewDecoder(bytes.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("json value: %w", err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("json value: trailing data")
	}
	av, ok := jsonAttr(v)
	switch v.(type) {
	case map[string]any, []any:
	default:
		ok = false
	}
	if !ok {
		return &types.AttributeValueMemberS{Value: string(s)}, nil
	}
	return av, nil
}

// jsonAttr converts a decoded JSON value; ok is false when a number in it
// does not fit N.
func jsonAttr(v any) (types.AttributeValue, bool) {
	switch x := v.(type) {
	case nil:
		return &types.AttributeValueMemberNULL{Value: true}, true
	case bool:
		return &types.AttributeValueMemberBOOL{Value: x}, true
	case json.Number:
		return &types.AttributeValueMemberN{Value: string(x)}, exactNumber([]byte(x))
	case string:
		return &types.AttributeValueMemberS{Value: x}, true
	case []any:
		l := make([]types.AttributeValue, len(x))
		for i, e := range x {
			var ok bool
			if l[i], ok = jsonAttr(e); !ok {
				return nil, false
			}
		}
		return &types.AttributeValueMemberL{Value: l}, true
	case map[string]any:
		m := make(map[string]types.AttributeValue, len(x))
		for k, e := range x {
			var ok bool
			if m[k], ok = jsonAttr(e); !ok {
				return nil, false
			}
		}
		return &types.AttributeValueMemberM{Value: m}, true
	}
	return &types.AttributeValueMemberS{Value: fmt.Sprint(v)}, true
}

// keyValue converts a key column's value to the key attribute's type
// (S, N or B, as the table declares it).
func (cv *converter) keyValue(oid uint32, v change.Value, t types.ScalarAttributeType) (types.AttributeValue, error) {
	if !v.HasData() {
		return nil, fmt.Errorf("a key value is %s", v.Kind)
	}
	switch t {
	case types.ScalarAttributeTypeB:
		av, err := cv.value(oid, v)
		if err != nil {
			return nil, err
		}
		if b, ok := av.(*types.AttributeValueMemberB); ok {
			return b, nil
		}
		s, err := cv.toText(oid, v)
		if err != nil {
			return nil, err
		}
		return &types.AttributeValueMemberB{Value: bytes.Clone(s)}, nil
	case types.ScalarAttributeTypeN:
		s, err := cv.toText(oid, v)
		if err != nil {
			return nil, err
		}
		if !exactNumber(s) {
			return nil, fmt.Errorf("key value %q is not a number DynamoDB can hold (the table's key attribute is N)", s)
		}
		return &types.AttributeValueMemberN{Value: string(s)}, nil
	default:
		s, err := cv.toText(oid, v)
		if err != nil {
			return nil, err
		}
		return &types.AttributeValueMemberS{Value: string(s)}, nil
	}
}
