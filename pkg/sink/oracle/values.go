package oracle

import (
	"bytes"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/godror/godror"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// PostgreSQL type OIDs the binds convert from text.
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidOID         = 26
	oidFloat4      = 700
	oidFloat8      = 701
	oidDate        = 1082
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidInterval    = 1186
	oidNumeric     = 1700
	oidUUID        = 2950
)

// bindKind is the Go type a column's values are bound as: one typed slice
// per column, which godror sends as one array bind.
type bindKind uint8

const (
	bindString   bindKind = iota + 1 // []string: CHAR, VARCHAR2, CLOB, JSON, …; "" is NULL
	bindInt                          // []sql.NullInt64: NUMBER from integers and booleans
	bindNumber                       // []godror.Number: NUMBER from numeric, exactness checked
	bindFloat                        // []sql.NullFloat64: BINARY_FLOAT, BINARY_DOUBLE
	bindBytes                        // [][]byte: RAW, BLOB; nil is NULL
	bindTime                         // []sql.NullTime: DATE, TIMESTAMP [WITH TIME ZONE]
	bindInterval                     // []string in Oracle's interval literal form
)

// targetColumn is one column of the target table as Oracle's catalog
// describes it (ALL_TAB_COLUMNS).
type targetColumn struct {
	Name     string // the Oracle name, unquoted
	DataType string // DATA_TYPE: NUMBER, VARCHAR2, TIMESTAMP(6) WITH TIME ZONE, …
	// Precision and Scale of a NUMBER; -1 when not set (NUMBER without
	// them holds any 38 digits).
	Precision, Scale int
	Nullable         bool
}

// isLOB reports whether the column takes LOB values (CLOB, NCLOB, BLOB, and
// JSON, which converts from CLOB), whose large values bind as temporary LOBs
// rather than inline.
func (c targetColumn) isLOB() bool {
	switch c.DataType {
	case "CLOB", "NCLOB", "BLOB", "JSON":
		return true
	}
	return false
}

// binder converts one source column's values into one target column's
// binds. It is chosen once per relation and target table.
type binder struct {
	name   string // source column name, for errors
	srcOID uint32
	tgt    targetColumn
	kind   bindKind
	// key: a key column, where '' cannot become NULL.
	key bool
	// empty is what a '' string becomes: "" (NULL, the default) or the
	// configured placeholder.
	empty string
}

// newBinder picks the bind kind for a source type and a target column; an
// impossible pair (bytea into NUMBER) is an error naming both.
func newBinder(src change.Column, tgt targetColumn, key bool, empty string) (*binder, error) {
	b := &binder{name: src.Name, srcOID: src.TypeOID, tgt: tgt, key: key, empty: empty}
	dt := tgt.DataType
	switch {
	case dt == "NUMBER" || dt == "FLOAT" || dt == "BOOLEAN":
		switch src.TypeOID {
		case oidInt2, oidInt4, oidInt8, oidOID, oidBool:
			b.kind = bindInt
		case oidBytea, oidUUID, oidDate, oidTime, oidTimestamp, oidTimestamptz, oidInterval:
			return nil, fmt.Errorf("column %s: a %s value cannot go into Oracle %s", src.Name, typeName(src), dt)
		default:
			b.kind = bindNumber
		}
	case dt == "BINARY_FLOAT" || dt == "BINARY_DOUBLE":
		b.kind = bindFloat
	case dt == "RAW" || dt == "BLOB" || dt == "LONG RAW":
		if src.TypeOID != oidBytea && src.TypeOID != oidUUID {
			return nil, fmt.Errorf("column %s: a %s value cannot go into Oracle %s (only bytea and uuid can)", src.Name, typeName(src), dt)
		}
		b.kind = bindBytes
	case dt == "DATE" || strings.HasPrefix(dt, "TIMESTAMP"):
		if src.TypeOID != oidDate && src.TypeOID != oidTimestamp && src.TypeOID != oidTimestamptz {
			return nil, fmt.Errorf("column %s: a %s value cannot go into Oracle %s (only date and timestamp can)", src.Name, typeName(src), dt)
		}
		b.kind = bindTime
	case strings.HasPrefix(dt, "INTERVAL"):
		if src.TypeOID != oidInterval && src.TypeOID != oidTime {
			return nil, fmt.Errorf("column %s: a %s value cannot go into Oracle %s (only interval and time can)", src.Name, typeName(src), dt)
		}
		b.kind = bindInterval
	default: // CHAR, VARCHAR2, NCHAR, NVARCHAR2, CLOB, NCLOB, JSON, LONG, XMLTYPE…
		b.kind = bindString
	}
	return b, nil
}

func typeName(c change.Column) string {
	if c.TypeName != "" {
		return c.TypeName
	}
	return "type " + strconv.FormatUint(uint64(c.TypeOID), 10)
}

// errValue is a value the target column cannot hold exactly: a terminal
// error, never a silent change.
var errValue = errors.New("value cannot be held exactly")

// colArray holds one column's binds for one statement: only the slice of
// the binder's kind is used.
type colArray struct {
	strs   []string
	ints   []sql.NullInt64
	nums   []godror.Number
	floats []sql.NullFloat64
	bytes  [][]byte
	times  []sql.NullTime
	lobs   []godror.Lob
}

// newColArray returns an array with room for n values of kind k.
func newColArray(k bindKind, lob bool, n int) *colArray {
	a := &colArray{}
	switch {
	case lob:
		a.lobs = make([]godror.Lob, 0, n)
	case k == bindInt:
		a.ints = make([]sql.NullInt64, 0, n)
	case k == bindNumber:
		a.nums = make([]godror.Number, 0, n)
	case k == bindFloat:
		a.floats = make([]sql.NullFloat64, 0, n)
	case k == bindBytes:
		a.bytes = make([][]byte, 0, n)
	case k == bindTime:
		a.times = make([]sql.NullTime, 0, n)
	default:
		a.strs = make([]string, 0, n)
	}
	return a
}

// arg is the array bind for the statement.
func (a *colArray) arg(k bindKind, lob bool) any {
	if lob {
		return a.lobs
	}
	switch k {
	case bindInt:
		return a.ints
	case bindNumber:
		return a.nums
	case bindFloat:
		return a.floats
	case bindBytes:
		return a.bytes
	case bindTime:
		return a.times
	}
	return a.strs
}

// add converts v and appends it. lob appends a temporary-LOB bind instead
// of an inline one (the row's large-LOB path). The error names the column
// and why; the caller adds the table and key.
func (b *binder) add(a *colArray, v change.Value, m *pgtype.Map, lob bool) error {
	if v.Kind != change.ValueText && v.Kind != change.ValueNull {
		return fmt.Errorf("column %s: a %s value cannot be written", b.name, v.Kind)
	}
	null := v.Kind == change.ValueNull
	if lob {
		switch {
		case null:
			a.lobs = append(a.lobs, godror.Lob{IsClob: b.tgt.DataType != "BLOB"})
		case b.tgt.DataType == "BLOB":
			raw, err := b.bytesOf(v.Data)
			if err != nil {
				return err
			}
			a.lobs = append(a.lobs, godror.Lob{Reader: bytes.NewReader(raw)})
		default:
			s, err := b.stringOf(v.Data)
			if err != nil {
				return err
			}
			a.lobs = append(a.lobs, godror.Lob{IsClob: true, Reader: strings.NewReader(s)})
		}
		return nil
	}
	switch b.kind {
	case bindString:
		if null {
			a.strs = append(a.strs, "")
			return nil
		}
		s, err := b.stringOf(v.Data)
		if err != nil {
			return err
		}
		a.strs = append(a.strs, s)
	case bindInt:
		if null {
			a.ints = append(a.ints, sql.NullInt64{})
			return nil
		}
		n, err := b.intOf(v.Data)
		if err != nil {
			return err
		}
		a.ints = append(a.ints, sql.NullInt64{Int64: n, Valid: true})
	case bindNumber:
		if null {
			a.nums = append(a.nums, "")
			return nil
		}
		if err := checkNumber(v.Data, b.tgt); err != nil {
			return fmt.Errorf("column %s: %w", b.name, err)
		}
		a.nums = append(a.nums, godror.Number(v.Data))
	case bindFloat:
		if null {
			a.floats = append(a.floats, sql.NullFloat64{})
			return nil
		}
		f, err := parseFloat(v.Data)
		if err != nil {
			return fmt.Errorf("column %s: %q is not a number: %w", b.name, v.Data, errValue)
		}
		a.floats = append(a.floats, sql.NullFloat64{Float64: f, Valid: true})
	case bindBytes:
		if null {
			a.bytes = append(a.bytes, nil)
			return nil
		}
		raw, err := b.bytesOf(v.Data)
		if err != nil {
			return err
		}
		a.bytes = append(a.bytes, raw)
	case bindTime:
		if null {
			a.times = append(a.times, sql.NullTime{})
			return nil
		}
		t, err := b.timeOf(v.Data, m)
		if err != nil {
			return err
		}
		a.times = append(a.times, sql.NullTime{Time: t, Valid: true})
	case bindInterval:
		if null {
			a.strs = append(a.strs, "")
			return nil
		}
		s, err := b.intervalOf(v.Data, m)
		if err != nil {
			return err
		}
		a.strs = append(a.strs, s)
	}
	return nil
}

// stringOf applies the ” rule: Oracle stores ” as NULL, so an empty
// string becomes the configured placeholder, or NULL when none is set —
// except in a key column, where NULL would break the key.
func (b *binder) stringOf(data []byte) (string, error) {
	if len(data) > 0 {
		return string(data), nil
	}
	if b.empty == "" && b.key {
		return "", fmt.Errorf("key column %s is '' (empty string), which Oracle stores as NULL: set the sink's empty_string placeholder: %w", b.name, errValue)
	}
	return b.empty, nil
}

func (b *binder) intOf(data []byte) (int64, error) {
	if b.srcOID == oidBool {
		switch string(data) {
		case "t":
			return 1, nil
		case "f":
			return 0, nil
		}
		return 0, fmt.Errorf("column %s: %q is not a boolean: %w", b.name, data, errValue)
	}
	n, err := strconv.ParseInt(string(data), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("column %s: %q is not an integer: %w", b.name, data, errValue)
	}
	if b.tgt.Precision > 0 {
		// NUMBER(p,s) rejects wider values itself, but its ORA-01438 names
		// no column; checking here names the row and the column.
		if limit := b.tgt.Precision - max(b.tgt.Scale, 0); digits(n) > limit {
			return 0, fmt.Errorf("column %s: %d has more digits than NUMBER(%d,%d) holds: %w", b.name, n, b.tgt.Precision, max(b.tgt.Scale, 0), errValue)
		}
	}
	return n, nil
}

func digits(n int64) int {
	d := 1
	for n >= 10 || n <= -10 {
		n /= 10
		d++
	}
	return d
}

func (b *binder) bytesOf(data []byte) ([]byte, error) {
	if b.srcOID == oidUUID {
		s := strings.ReplaceAll(string(data), "-", "")
		raw, err := hex.DecodeString(s)
		if err != nil || len(raw) != 16 {
			return nil, fmt.Errorf("column %s: %q is not a uuid: %w", b.name, data, errValue)
		}
		return raw, nil
	}
	if len(data) < 2 || data[0] != '\\' || data[1] != 'x' {
		return nil, fmt.Errorf("column %s: bytea value is not in hex form (bytea_output = hex): %w", b.name, errValue)
	}
	raw := make([]byte, hex.DecodedLen(len(data)-2))
	if _, err := hex.Decode(raw, data[2:]); err != nil {
		return nil, fmt.Errorf("column %s: bad bytea hex: %w", b.name, errValue)
	}
	if len(raw) == 0 {
		// Oracle stores an empty RAW or BLOB as NULL, like ''.
		if b.key {
			return nil, fmt.Errorf("key column %s is an empty bytea, which Oracle stores as NULL: %w", b.name, errValue)
		}
		return nil, nil
	}
	return raw, nil
}

// Oracle's DATE and TIMESTAMP range: 4712 BC to 9999 AD (Go years -4711 is
// 4712 BC, as year 0 is 1 BC).
const (
	minOracleYear = -4711
	maxOracleYear = 9999
)

func (b *binder) timeOf(data []byte, m *pgtype.Map) (time.Time, error) {
	var t time.Time
	switch b.srcOID {
	case oidDate:
		var d pgtype.Date
		if err := m.Scan(oidDate, pgtype.TextFormatCode, data, &d); err != nil {
			return t, fmt.Errorf("column %s: %q: %w", b.name, data, errValue)
		}
		if d.InfinityModifier != pgtype.Finite {
			return t, fmt.Errorf("column %s: %s has no Oracle DATE (make the column VARCHAR2 to keep it): %w", b.name, data, errValue)
		}
		t = d.Time
	case oidTimestamp:
		var ts pgtype.Timestamp
		if err := m.Scan(oidTimestamp, pgtype.TextFormatCode, data, &ts); err != nil {
			return t, fmt.Errorf("column %s: %q: %w", b.name, data, errValue)
		}
		if ts.InfinityModifier != pgtype.Finite {
			return t, fmt.Errorf("column %s: %s has no Oracle TIMESTAMP (make the column VARCHAR2 to keep it): %w", b.name, data, errValue)
		}
		t = ts.Time
	default:
		var ts pgtype.Timestamptz
		if err := m.Scan(oidTimestamptz, pgtype.TextFormatCode, data, &ts); err != nil {
			return t, fmt.Errorf("column %s: %q: %w", b.name, data, errValue)
		}
		if ts.InfinityModifier != pgtype.Finite {
			return t, fmt.Errorf("column %s: %s has no Oracle TIMESTAMP (make the column VARCHAR2 to keep it): %w", b.name, data, errValue)
		}
		t = ts.Time.UTC()
	}
	if y := t.Year(); y < minOracleYear || y > maxOracleYear {
		return t, fmt.Errorf("column %s: %s is outside Oracle's 4712 BC to 9999 AD (make the column VARCHAR2 to keep it): %w", b.name, data, errValue)
	}
	if b.tgt.DataType == "DATE" && t.Nanosecond() != 0 {
		return t, fmt.Errorf("column %s: %s has fractional seconds, which Oracle DATE drops (make the column TIMESTAMP): %w", b.name, data, errValue)
	}
	return t, nil
}

// intervalOf formats a time or interval as Oracle's interval literal:
// "±D HH:MI:SS.FFFFFF" for DAY TO SECOND, "±Y-M" for YEAR TO MONTH.
func (b *binder) intervalOf(data []byte, m *pgtype.Map) (string, error) {
	var iv pgtype.Interval
	if b.srcOID == oidTime {
		var tm pgtype.Time
		if err := m.Scan(oidTime, pgtype.TextFormatCode, data, &tm); err != nil {
			return "", fmt.Errorf("column %s: %q: %w", b.name, data, errValue)
		}
		iv = pgtype.Interval{Microseconds: tm.Microseconds, Valid: true}
	} else if err := m.Scan(oidInterval, pgtype.TextFormatCode, data, &iv); err != nil {
		return "", fmt.Errorf("column %s: %q: %w", b.name, data, errValue)
	}
	if strings.HasPrefix(b.tgt.DataType, "INTERVAL YEAR") {
		if iv.Days != 0 || iv.Microseconds != 0 {
			return "", fmt.Errorf("column %s: %s has days or a time part, which INTERVAL YEAR TO MONTH cannot hold: %w", b.name, data, errValue)
		}
		sign, mo := "+", int64(iv.Months)
		if mo < 0 {
			sign, mo = "-", -mo
		}
		return fmt.Sprintf("%s%d-%d", sign, mo/12, mo%12), nil
	}
	if iv.Months != 0 {
		return "", fmt.Errorf("column %s: %s has months or years, which INTERVAL DAY TO SECOND cannot hold (a month is no fixed number of days): %w", b.name, data, errValue)
	}
	// PostgreSQL keeps days and time apart (a day may be 23 or 25 hours
	// across a DST change when added to a timestamptz); Oracle has one
	// signed span of 24-hour days.
	total := int64(iv.Days)*86_400_000_000 + iv.Microseconds
	sign := "+"
	if total < 0 {
		sign, total = "-", -total
	}
	us := total % 1_000_000
	s := total / 1_000_000
	return fmt.Sprintf("%s%d %02d:%02d:%02d.%06d", sign, s/86400, s/3600%24, s/60%60, s%60, us), nil
}

// parseFloat reads PostgreSQL's float text, NaN and ±Infinity included.
func parseFloat(data []byte) (float64, error) {
	return strconv.ParseFloat(string(data), 64) // accepts NaN, Infinity, -Infinity
}

// checkNumber checks that a numeric's text fits the target NUMBER
// exactly: at most 38 significant digits, magnitude within Oracle's range,
// and no more fraction digits than the column's scale (Oracle would round
// them away silently). NaN and ±Infinity have no NUMBER.
func checkNumber(data []byte, tgt targetColumn) error {
	switch string(data) {
	case "NaN", "Infinity", "-Infinity":
		return fmt.Errorf("%s has no Oracle NUMBER (make the column VARCHAR2 or BINARY_DOUBLE to keep it): %w", data, errValue)
	}
	d := data
	if len(d) > 0 && (d[0] == '-' || d[0] == '+') {
		d = d[1:]
	}
	// intDigits: integer digits after leading zeros; fracDigits: fraction
	// digits before trailing zeros; lead: the fraction's leading zeros when
	// the integer part is zero; sig: significant digits.
	dot := len(d)
	for i, c := range d {
		switch {
		case c == '.' && dot == len(d):
			dot = i
		case c < '0' || c > '9':
			return fmt.Errorf("%q is not a number: %w", data, errValue)
		}
	}
	intPart, frac := d[:dot], []byte(nil)
	if dot < len(d) {
		frac = d[dot+1:]
	}
	if len(intPart) == 0 && len(frac) == 0 {
		return fmt.Errorf("%q is not a number: %w", data, errValue)
	}
	for len(intPart) > 0 && intPart[0] == '0' {
		intPart = intPart[1:]
	}
	for len(frac) > 0 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	var sig, lead int
	if len(intPart) > 0 {
		// Trailing zeros of the integer part are not significant when
		// there is no fraction (1e30 is one digit for NUMBER).
		n := len(intPart)
		if len(frac) == 0 {
			for n > 0 && intPart[n-1] == '0' {
				n--
			}
		}
		sig = n + len(frac)
	} else {
		for lead < len(frac) && frac[lead] == '0' {
			lead++
		}
		sig = len(frac) - lead
	}
	if sig > 38 {
		return fmt.Errorf("%s has %d significant digits, Oracle NUMBER holds 38 (make the column VARCHAR2 to keep it): %w", data, sig, errValue)
	}
	if len(intPart) > 126 || lead >= 130 {
		return fmt.Errorf("%s is outside Oracle NUMBER's range: %w", data, errValue)
	}
	if tgt.Scale >= 0 && tgt.Precision > 0 && len(frac) > tgt.Scale {
		return fmt.Errorf("%s has %d fraction digits, NUMBER(%d,%d) would round it: %w", data, len(frac), tgt.Precision, tgt.Scale, errValue)
	}
	if tgt.Precision > 0 && tgt.Scale >= 0 && len(intPart) > tgt.Precision-tgt.Scale {
		// Oracle would say ORA-01438 without naming the column.
		return fmt.Errorf("%s has %d integer digits, NUMBER(%d,%d) holds %d: %w", data, len(intPart), tgt.Precision, tgt.Scale, tgt.Precision-tgt.Scale, errValue)
	}
	return nil
}
