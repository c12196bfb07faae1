package snapshot

import (
	"bytes"
	"fmt"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/copytext"
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
		row, err := copytext.ParseLine(line, w.ncols)
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
