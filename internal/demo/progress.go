package demo

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/schollz/progressbar/v3"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/pipeline"
)

// sample is one look at both ends of the pipeline.
type sample struct {
	at time.Time
	// commits is the number of workload transactions committed on A.
	commits uint64
	// changes is the number of row changes capture wrote to the trail.
	changes uint64
	// rows is the number of row changes applied on C.
	rows uint64
	// sourceLSN is A's pg_current_wal_lsn(); zero when it could not be read.
	sourceLSN change.LSN
	// appliedLSN is the end LSN of the last transaction applied on C.
	appliedLSN change.LSN
	// lastCommit is the source commit time of that transaction.
	lastCommit time.Time
	// caughtUp means C has applied everything written before the final
	// marker: the lag is zero.
	caughtUp bool
	// target names the target in the line. Default "C".
	target string
}

// statusLine renders the change from prev to cur, in the order of the
// pipeline: commits on A, changes captured, rows applied on C, lag. E.g.
//
//	12s  A 412 commits/s → captured 23,145 → C 22,980 rows, 1,830/s │ lag 12.3 kB, 0.2s
func statusLine(start time.Time, prev, cur sample) string {
	secs := cur.at.Sub(prev.at).Seconds()
	rate := func(a, b uint64) uint64 {
		if secs <= 0 || b < a {
			return 0
		}
		return uint64(float64(b-a)/secs + 0.5)
	}
	lag := "lag –"
	switch {
	case cur.caughtUp:
		lag = "lag 0 B, 0.0s"
	case !cur.lastCommit.IsZero():
		var lagBytes uint64
		if cur.sourceLSN > cur.appliedLSN {
			lagBytes = uint64(cur.sourceLSN - cur.appliedLSN)
		}
		lagSecs := max(cur.at.Sub(cur.lastCommit).Seconds(), 0)
		lag = fmt.Sprintf("lag %s, %.1fs", bytesText(lagBytes), lagSecs)
	}
	target := cur.target
	if target == "" {
		target = "C"
	}
	return fmt.Sprintf("%3.0fs  A %s commits/s → captured %s → %s %s rows, %s/s │ %s",
		cur.at.Sub(start).Seconds(), thousands(rate(prev.commits, cur.commits)), thousands(cur.changes), target,
		thousands(cur.rows), thousands(rate(prev.rows, cur.rows)), lag)
}

// fit cuts line to at most width columns (0: no limit), so that a live
// line never wraps, which would break redrawing it in place.
func fit(line string, width int) string {
	if width <= 0 {
		return line
	}
	r := []rune(line)
	if len(r) <= width {
		return line
	}
	return string(r[:max(width-1, 0)]) + "…"
}

// monitor samples the pipeline and shows the status: a live line on a
// terminal, else a plain line every 2 s.
type monitor struct {
	out   io.Writer
	live  bool
	width int // terminal columns for the live line; 0: unknown
	start time.Time
	a     *pgx.Conn // to A, for pg_current_wal_lsn()
	p     *pipeline.Pipeline
	w     *workload
	// target names the target in status lines ("C", "DynamoDB").
	target string

	mu       sync.Mutex
	caughtUp bool
}

func (m *monitor) setCaughtUp() {
	m.mu.Lock()
	m.caughtUp = true
	m.mu.Unlock()
}

func (m *monitor) sample(ctx context.Context) sample {
	s := sample{at: time.Now(), commits: m.w.Commits(), changes: m.p.Capture().Stats().Changes}
	for i, w := range m.p.Workers() {
		ws := w.Stats()
		s.rows += ws.Rows
		// With several sinks the slowest one is the lag.
		if i == 0 || ws.Position.EndLSN < s.appliedLSN {
			s.appliedLSN, s.lastCommit = ws.Position.EndLSN, ws.LastCommitTime
		}
	}
	var lsn string
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := m.a.QueryRow(qctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err == nil {
		s.sourceLSN, _ = change.ParseLSN(lsn)
	}
	m.mu.Lock()
	s.caughtUp = m.caughtUp
	m.mu.Unlock()
	return s
}

// run shows the status until ctx ends, then prints the last line for good.
func (m *monitor) run(ctx context.Context) {
	every := 2 * time.Second
	var bar *progressbar.ProgressBar
	if m.live {
		every = time.Second
		bar = progressbar.NewOptions(-1,
			progressbar.OptionSetWriter(m.out),
			progressbar.OptionSpinnerType(14),
			progressbar.OptionSetElapsedTime(false),
			progressbar.OptionUseANSICodes(true),
			progressbar.OptionSetDescription("starting the workload"),
			progressbar.OptionSetRenderBlankState(true),
		)
	}
	first := m.sample(context.WithoutCancel(ctx))
	first.at = m.start
	prev := first
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		var done bool
		select {
		case <-ctx.Done():
			done = true
		case <-t.C:
		}
		cur := m.sample(context.WithoutCancel(ctx))
		if done {
			// The last line shows the rates over the whole run.
			prev = first
		}
		cur.target = m.target
		line := statusLine(m.start, prev, cur)
		switch {
		case bar != nil:
			bar.Describe(fit(line, m.width-4)) // room for the spinner
			if done {
				_ = bar.Finish()
				fmt.Fprintln(m.out)
			}
		default:
			fmt.Fprintln(m.out, "  "+line)
		}
		if done {
			return
		}
		prev = cur
	}
}

// thousands formats n with comma separators: 1234567 → "1,234,567".
func thousands(n uint64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// bytesText formats a byte count with a decimal unit: 12345 → "12.3 kB".
func bytesText(n uint64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.1f kB", float64(n)/1000)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	default:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	}
}
