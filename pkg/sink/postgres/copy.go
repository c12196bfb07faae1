package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
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
	if err := s.inTx(ctx); err != nil {
		return err
	}
	stage, err := s.stage(ctx, len(t.cols))
	if err != nil {
		return err
	}
	s.statements++
	if _, err := s.tx.Conn().PgConn().CopyFrom(ctx, copyRows(rows), "COPY "+stage+" FROM STDIN"); err != nil {
		return err
	}
	s.statements++
	_, err = s.tx.Exec(ctx, insertSQL(t, "WITH u AS (DELETE FROM "+stage+" RETURNING *) ", "u"))
	return err
}

// stage returns the session's staging table for n text columns, creating
// it on first use (ON COMMIT DELETE ROWS; statements using it empty it).
func (s *Sink) stage(ctx context.Context, n int) (string, error) {
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
			return "", err
		}
		s.staged[n] = true
	}
	return stage, nil
}

// insertFresh loads rows whose keys were first seen as INSERTs in this
// batch straight into the target table with one COPY — half the server work
// of the staging path, which writes every row twice and probes the key
// index for the upsert. Those keys are not on the target unless the stream
// is being applied over a copy that already holds them (a resumed
// snapshot); then the COPY fails with a unique violation, the fast path is
// switched off for this sink for a while, and the batch is retried through
// the upserting path (the whole target transaction rolls back, the
// position with it, so nothing is applied twice).
func (s *Sink) insertFresh(ctx context.Context, t *table, rows []change.Row) error {
	if err := s.inTx(ctx); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("COPY ")
	b.WriteString(t.target.sql())
	b.WriteString(" (")
	for i, c := range t.cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.name)
	}
	b.WriteString(") FROM STDIN")
	buf := copyRows(rows)
	s.statements++
	if _, err := s.tx.Conn().PgConn().CopyFrom(ctx, buf, b.String()); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" /* unique_violation */ {
			disableFastCopy(s.fastKey())
			s.log.Warn("target already holds rows the source inserted (applying over a newer copy?): upserting instead of COPY for a while",
				"table", t.target.String(), "err", pgErr.Message)
			return sink.Retriable(fmt.Errorf("insert into %s (%d rows, through COPY): %w", t.target, len(rows), err))
		}
		return fmt.Errorf("insert into %s (%d rows, through COPY): %w", t.target, len(rows), err)
	}
	return nil
}

// fastCopyOff maps a sink (name and target) to when its fresh-insert COPY
// path may be used again after a unique violation. It outlives Sink values:
// the apply worker opens a new one for the retry.
var fastCopyOff sync.Map

// fastCopyPause is how long the fast path stays off after a conflict.
const fastCopyPause = 10 * time.Minute

func (s *Sink) fastKey() string { return s.cfg.Name + "\x00" + s.desc }

func disableFastCopy(name string) { fastCopyOff.Store(name, time.Now().Add(fastCopyPause)) }

func fastCopyAllowed(name string) bool {
	v, ok := fastCopyOff.Load(name)
	if !ok {
		return true
	}
	if time.Now().After(v.(time.Time)) {
		fastCopyOff.Delete(name)
		return true
	}
	return false
}

// copyRows encodes rows in COPY's text format.
func copyRows(rows []change.Row) *bytes.Buffer {
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
	return &buf
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
