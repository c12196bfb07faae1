package snapshot

import (
	"bytes"
	"fmt"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// rowWriter parses COPY text output (rows ending in \n, columns separated
// by \t, \N for NULL, backslash escapes) into rows of text values, handed
// to flush in batches of batch rows.
type rowWriter struct {
	ncols int
	batch int
	flush func([]change.Row) error
	buf   []byte // an incomplete line
	rows  []change.Row
}

func (w *rowWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			break
		}
		line := p[:i]
		if len(w.buf) > 0 {
			line = append(w.buf, line...)
			w.buf = w.buf[:0]
		}
		row, err := parseCopyLine(line, w.ncols)
		if err != nil {
			return 0, err
		}
		w.rows = append(w.rows, row)
		if len(w.rows) >= w.batch {
			rows := w.rows
			w.rows = nil
			if err := w.flush(rows); err != nil {
				return 0, err
			}
		}
		p = p[i+1:]
	}
	return n, nil
}

// Close flushes the last rows.
func (w *rowWriter) Close() error {
	if len(w.buf) > 0 {
		return fmt.Errorf("COPY output ends inside a row")
	}
	if len(w.rows) == 0 {
		return nil
	}
	rows := w.rows
	w.rows = nil
	return w.flush(rows)
}

// parseCopyLine parses one row of COPY text format. The values are copies:
// the line's buffer is reused.
func parseCopyLine(line []byte, ncols int) (change.Row, error) {
	row := make(change.Row, 0, ncols)
	for _, f := range bytes.Split(line, []byte{'\t'}) {
		if len(f) == 2 && f[0] == '\\' && f[1] == 'N' {
			row = append(row, change.Null)
			continue
		}
		v, err := unescape(f)
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

func unescape(f []byte) ([]byte, error) {
	out := make([]byte, 0, len(f))
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(f) {
			return nil, fmt.Errorf("COPY value ends in a backslash")
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
			for k < 2 && i+1 < len(f) && isHex(f[i+1]) {
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

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	default:
		return int(c-'A') + 10
	}
}
