// Package copytext parses PostgreSQL's COPY text format: one row per line,
// columns separated by tabs, \N for NULL, backslash escapes. Snapshot
// loaders that take rows rather than COPY data (DynamoDB, Aurora DSQL,
// sinks without a bulk path) read the source's COPY TO output with it.
package copytext

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// ParseLine parses one row (a trailing newline is allowed) into ncols text
// values. The values are copies: the caller may reuse line's buffer.
func ParseLine(line []byte, ncols int) (change.Row, error) {
	line = bytes.TrimSuffix(line, []byte{'\n'})
	row := make(change.Row, 0, ncols)
	for f := range bytes.SplitSeq(line, []byte{'\t'}) {
		if len(f) == 2 && f[0] == '\\' && f[1] == 'N' {
			row = append(row, change.Null)
			continue
		}
		v, err := Unescape(f)
		if err != nil {
			return nil, err
		}
		row = append(row, change.Value{Kind: change.ValueText, Data: v})
	}
	if len(row) != ncols {
		return nil, fmt.Errorf("COPY row has %d columns, want %d", len(row), ncols)
	}
	return row, nil
}

// Unescape undoes COPY text escaping of one field into a new slice: \b \f
// \n \r \t \v, \xH or \xHH, \O to \OOO (octal), and a backslash before any
// other character stands for that character. A field ending in a lone
// backslash is an error.
func Unescape(f []byte) ([]byte, error) {
	if bytes.IndexByte(f, '\\') < 0 {
		return bytes.Clone(f), nil
	}
	out := make([]byte, 0, len(f))
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(f) {
			return nil, errors.New("COPY value ends in a backslash")
		}
		switch e := f[i]; e {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'v':
			out = append(out, '\v')
		case 'x':
			v, k := 0, 0
			for k < 2 && i+1 < len(f) && hexVal(f[i+1]) >= 0 {
				i++
				v = v*16 + hexVal(f[i])
				k++
			}
			out = append(out, byte(v))
		default:
			if e >= '0' && e <= '7' {
				v := int(e - '0')
				for k := 0; k < 2 && i+1 < len(f) && f[i+1] >= '0' && f[i+1] <= '7'; k++ {
					i++
					v = v*8 + int(f[i]-'0')
				}
				out = append(out, byte(v))
			} else {
				out = append(out, e) // \\ and any other escaped character
			}
		}
	}
	return out, nil
}

// hexVal is c's value as a hex digit, or -1.
func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
