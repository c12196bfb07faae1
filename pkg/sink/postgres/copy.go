package postgres

import (
	"bytes"
	"context"
	"strconv"
	"strings"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// defaultCopyMinRows is the size from which an insert or upsert set goes
// through COPY into a staging table rather than unnest arrays. COPY costs
// about a millisecond more per statement (two more round trips, the staging
// table) but less per row: on a five-column table unnest wins below about
// 1,000 rows, COPY by ~20% at 10,000 (BenchmarkApplyInsertSize,
// BenchmarkApplyInsert).
const defaultCopyMinRows = 2000

// copyInsert loads rows with COPY (text format) into a session staging table
// of text columns, then moves them into the target with one INSERT … SELECT
// that casts and upserts like the unnest form. The staging table is
// temporary, ON COMMIT DELETE ROWS, and emptied by the INSERT itself (a
// DELETE … RETURNING feeds it), so a Partial transaction can use it again.
func (s *Sink) copyInsert(ctx context.Context, t *table, rows []change.Row) error {
	n := len(t.cols)
	stage := "pg_temp.cdcd_stage_" + strconv.Itoa(n)
	if !s.staged[n] {
		var b strings.Builder
		b.WriteString("CREATE TEMP TABLE IF NOT EXISTS ")
		b.WriteString(stage)
		b.WriteString(" (")
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("c" + strconv.Itoa(i) + " text")
		}
		b.WriteString(") ON COMMIT DELETE ROWS")
		if _, err := s.tx.Exec(ctx, b.String()); err != nil {
			return err
		}
		s.staged[n] = true
	}
	var buf bytes.Buffer
	for _, r := range rows {
		for i, v := range r {
			if i > 0 {
				buf.WriteByte('\t')
			}
			copyText(&buf, v)
		}
		buf.WriteByte('\n')
	}
	s.statements++
	if _, err := s.tx.Conn().PgConn().CopyFrom(ctx, &buf, "COPY "+stage+" FROM STDIN"); err != nil {
		return err
	}
	s.statements++
	_, err := s.tx.Exec(ctx, insertSQL(t, "WITH u AS (DELETE FROM "+stage+" RETURNING *) ", "u"))
	return err
}

// copyText writes v in COPY's text format: \N for NULL, backslash escapes
// for the characters that delimit.
func copyText(buf *bytes.Buffer, v change.Value) {
	if v.Kind != change.ValueText {
		buf.WriteString(`\N`)
		return
	}
	start := 0
	for i, c := range v.Data {
		var esc string
		switch c {
		case '\\':
			esc = `\\`
		case '\t':
			esc = `\t`
		case '\n':
			esc = `\n`
		case '\r':
			esc = `\r`
		default:
			continue
		}
		buf.Write(v.Data[start:i])
		buf.WriteString(esc)
		start = i + 1
	}
	buf.Write(v.Data[start:])
}
