package snapshot

import (
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// TableProgress is one table's snapshot progress.
type TableProgress struct {
	// Source and Target name the table ("schema.table").
	Source, Target string
	// Rows copied so far in this process (chunks finished earlier are not
	// counted) and the catalog's estimate of the table's rows.
	Rows, RowsEstimate int64
	// Chunks finished (in this process or before) and in all.
	ChunksDone, Chunks int
	// Finished: every chunk is loaded (and the deferred key added).
	Finished bool
	// Started is when this process started copying the table.
	Started time.Time
}

// Progress is a snapshot's state for status displays.
type Progress struct {
	// Mode is the configured snapshot mode.
	Mode string
	// ID is the snapshot's ID, "" before one started.
	ID string
	// Running: the copy is under way; Complete: it finished.
	Running, Complete bool
	Tables            []TableProgress
}

// Progress returns the snapshot's progress. Safe for concurrent use (the
// status endpoint reads it while the snapshot runs).
func (r *Runner) Progress() Progress {
	p := Progress{Mode: r.cfg.Mode}
	r.mu.Lock()
	if r.state != nil {
		p.ID, p.Complete = r.state.ID, r.state.Complete
	}
	r.mu.Unlock()
	p.Tables, p.Running = r.progress.snapshot()
	p.Running = p.Running && !p.Complete
	return p
}

type progress struct {
	mu     sync.Mutex
	tables []*TableProgress
	byName map[string]*TableProgress
	bars   map[string]*progressbar.ProgressBar
}

func newProgress() *progress {
	return &progress{byName: map[string]*TableProgress{}, bars: map[string]*progressbar.ProgressBar{}}
}

func (p *progress) add(t *TableState, done int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tp := &TableProgress{Source: t.Table.Source.String(), Target: t.Table.Target.String(), RowsEstimate: t.Table.Rows,
		ChunksDone: done, Chunks: len(t.Chunks), Finished: t.Finished}
	p.tables = append(p.tables, tp)
	p.byName[tp.Target] = tp
}

// chunk records a finished chunk of rows rows; bar draws it on a terminal.
func (p *progress) chunk(target string, rows int64, bar io.Writer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tp := p.byName[target]
	if tp == nil {
		return
	}
	tp.Rows += rows
	tp.ChunksDone++
	if b := p.bar(tp, bar); b != nil {
		_ = b.Add64(rows)
	}
}

func (p *progress) start(target string, bar io.Writer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if tp := p.byName[target]; tp != nil && tp.Started.IsZero() {
		tp.Started = time.Now()
		p.bar(tp, bar)
	}
}

func (p *progress) finish(target string, bar io.Writer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tp := p.byName[target]
	if tp == nil {
		return
	}
	tp.Finished = true
	if b := p.bars[target]; b != nil {
		_ = b.Finish()
	}
}

// bar returns the table's progress bar on a terminal (nil otherwise).
func (p *progress) bar(tp *TableProgress, w io.Writer) *progressbar.ProgressBar {
	if w == nil {
		return nil
	}
	if b := p.bars[tp.Target]; b != nil {
		return b
	}
	b := progressbar.NewOptions64(max(tp.RowsEstimate, 1),
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(tp.Target),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("rows"),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionOnCompletion(func() { _, _ = io.WriteString(w, "\n") }),
		progressbar.OptionFullWidth(),
	)
	p.bars[tp.Target] = b
	return b
}

func (p *progress) snapshot() ([]TableProgress, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]TableProgress, len(p.tables))
	running := false
	for i, t := range p.tables {
		out[i] = *t
		running = running || !t.Finished
	}
	return out, running
}

func (p *progress) totals() (rows int64, tables int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.tables {
		rows += t.Rows
	}
	return rows, len(p.tables)
}

// logLoop logs the running tables' progress every interval until done.
func (p *progress) logLoop(log *slog.Logger, interval time.Duration, done <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		tables, _ := p.snapshot()
		for _, tp := range tables {
			if tp.Finished || tp.Started.IsZero() {
				continue
			}
			el := time.Since(tp.Started).Seconds()
			rate := float64(tp.Rows) / max(el, 0.001)
			attrs := []any{"table", tp.Target, "rows", tp.Rows, "rows_estimate", tp.RowsEstimate,
				"chunks_done", tp.ChunksDone, "chunks", tp.Chunks, "rows_per_s", int64(rate)}
			if left := tp.RowsEstimate - tp.Rows; left > 0 && rate > 0 {
				attrs = append(attrs, "eta", (time.Duration(float64(left)/rate) * time.Second).Round(time.Second).String())
			}
			log.Info("snapshot progress", attrs...)
		}
	}
}
