package trigger

import (
	"errors"
	"fmt"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// errRecord marks row texts that are not record_out's output.
var errRecord = errors.New("malformed row text")

// parseRecord splits a composite value's text output (record_out) into its
// fields, reversing record_out's quoting: an empty field is NULL; a quoted
// field has '"' and '\' doubled (record_in also accepts a backslash before
// any character, and so does this); an unquoted field is taken verbatim.
// want is the number of fields expected, or -1 when unknown: it settles the
// one ambiguity of the format, "()" being both zero fields and one NULL
// field (with want -1, zero fields; see oneNull).
//
// The values share one new buffer; text is not retained.
func parseRecord(text []byte, want int) (change.Row, error) {
	if len(text) < 2 || text[0] != '(' || text[len(text)-1] != ')' {
		return nil, fmt.Errorf("%w: want (...), got %q", errRecord, abbrevBytes(text))
	}
	if len(text) == 2 && want <= 0 {
		return change.Row{}, nil
	}
	if want == 0 {
		return nil, fmt.Errorf("%w: fields in a row of zero columns", errRecord)
	}
	row := make(change.Row, 0, max(want, 4))
	buf := make([]byte, 0, len(text)) // unquoting only shrinks
	i := 1
	end := len(text) - 1
	for {
		// One field, starting at i and ending at a ',' or the final ')'.
		if i == end || text[i] == ',' {
			row = append(row, change.Null)
		} else {
			start := len(buf)
			for i < end && text[i] != ',' {
				c := text[i]
				switch c {
				case '"':
					i++
					for {
						if i >= end {
							return nil, fmt.Errorf("%w: unterminated quoted field %d", errRecord, len(row)+1)
						}
						c = text[i]
						if c == '\\' && i+1 < end {
							buf = append(buf, text[i+1])
							i += 2
							continue
						}
						if c == '"' {
							if i+1 < end && text[i+1] == '"' {
								buf = append(buf, '"')
								i += 2
								continue
							}
							i++
							break
						}
						buf = append(buf, c)
						i++
					}
				case '\\':
					if i+1 >= end {
						return nil, fmt.Errorf("%w: trailing backslash in field %d", errRecord, len(row)+1)
					}
					buf = append(buf, text[i+1])
					i += 2
				default:
					buf = append(buf, c)
					i++
				}
			}
			row = append(row, change.Value{Kind: change.ValueText, Data: buf[start:len(buf):len(buf)]})
		}
		if want >= 0 && len(row) > want {
			return nil, fmt.Errorf("%w: more than %d fields", errRecord, want)
		}
		if i == end {
			break
		}
		i++ // the comma
	}
	if want >= 0 && len(row) != want {
		return nil, fmt.Errorf("%w: %d fields, want %d", errRecord, len(row), want)
	}
	return row, nil
}

// abbrevBytes shortens b for an error message.
func abbrevBytes(b []byte) string {
	if len(b) > 60 {
		return string(b[:57]) + "..."
	}
	return string(b)
}
