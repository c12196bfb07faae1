package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// benchStreaming: one large transaction (StreamRows rows) replicated PG → PG
// with streaming of in-progress transactions on (the default) and off,
// alternately, -reps times each. It reports the time from the source
// statement's start to applied on the target (as a ratio: streaming off's
// time over streaming on's, > 1 when streaming is faster), the source's
// spilled and streamed bytes (pg_stat_replication_slots) and cdcd's peak
// RSS in each mode. The source runs with the default
// logical_decoding_work_mem (64MB): a transaction beyond it is spilled to
// the source's disk until its commit, or streamed to cdcd while it runs.
func benchStreaming(ctx context.Context, e *Env, res *Results) error {
	var srv servers
	defer srv.stop()
	src, err := srv.start(ctx, "stream-src", benchConf)
	if err != nil {
		return err
	}
	dst, err := srv.start(ctx, "stream-dst", benchConf)
	if err != nil {
		return err
	}
	if err := execSQL(ctx, src, applyDDL); err != nil {
		return err
	}
	if err := execSQL(ctx, dst, applyDDL); err != nil {
		return err
	}
	rows := e.Size.StreamRows
	type mode struct {
		name          string
		runs          []float64
		peak          uint64
		spilled, strm int64
	}
	on, off := &mode{name: "on"}, &mode{name: "off"}
	p := &pair{name: "streaming", src: src, dst: dst}
	defer p.stopCdcd() // the last run's cdcd outlived the harness without it
	for rep := range e.Size.Reps {
		for _, m := range []*mode{on, off} {
			if err := streamingRun(ctx, e, p, m.name, rows); err != nil {
				return err
			}
			d, spilled, streamed, rss, err := streamingMeasure(ctx, p, rows)
			if err != nil {
				return err
			}
			m.runs = append(m.runs, secs(d))
			m.peak = max(m.peak, rss)
			m.spilled, m.strm = spilled, streamed
			log.Printf("streaming %s, rep %d: %s rows applied %.1f s after the statement started; source spilled %s, streamed %s; cdcd peak RSS %.0f MiB",
				m.name, rep+1, human(rows), secs(d), mib(spilled), mib(streamed), float64(rss)/(1<<20))
		}
	}
	res.addRatio("streaming.bigtx", fmt.Sprintf("one %s-row transaction, statement start → applied, streaming on", human(rows)), "rows/s",
		float64(rows), "cdcd, streaming off", 1.0, on.runs, off.runs)
	for _, m := range []*mode{on, off} {
		note := fmt.Sprintf("streaming %s, one %s-row transaction: source spilled %s and streamed %s (pg_stat_replication_slots); cdcd peak RSS %.0f MiB (goal ≤ 150 MiB)",
			m.name, human(rows), mib(m.spilled), mib(m.strm), float64(m.peak)/(1<<20))
		res.Notes = append(res.Notes, note)
		fmt.Println(note)
	}
	return nil
}

// streamingRun starts cdcd on a new trail in the given streaming mode, with
// both tables emptied and the sink's position reset.
func streamingRun(ctx context.Context, e *Env, p *pair, mode string, rows int) error {
	if err := p.stopCdcd(); err != nil {
		return err
	}
	if err := execSQL(ctx, p.src, `TRUNCATE bench`); err != nil {
		return err
	}
	if err := execSQL(ctx, p.dst, `TRUNCATE bench`, `DELETE FROM cdcd.checkpoint WHERE name = 'target'`); err != nil && !strings.Contains(err.Error(), "does not exist") {
		return err
	}
	path, err := pipelineConfig(e, "streaming", p.src, p.dst, "")
	if err != nil {
		return err
	}
	y, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	y = []byte(strings.Replace(string(y), "  create: true\n", "  create: true\n  streaming: "+mode+"\n", 1))
	if err := os.WriteFile(path, y, 0o600); err != nil {
		return err
	}
	p.config, p.peak = path, 0
	if err := p.startCdcd(e); err != nil {
		return err
	}
	if err := p.drain(ctx); err != nil {
		return err
	}
	return execSQL(ctx, p.src, `SELECT pg_stat_reset_replication_slot('cdcd')`)
}

// streamingMeasure runs the large transaction and waits until the target
// has it.
func streamingMeasure(ctx context.Context, p *pair, rows int) (d time.Duration, spilled, streamed int64, rss uint64, err error) {
	t0 := time.Now()
	if err := execSQL(ctx, p.src, fmt.Sprintf(`INSERT INTO bench SELECT g, g %% 1000, 'row ' || g, now(), g * 1.25 FROM generate_series(1, %d) g`, rows)); err != nil {
		return 0, 0, 0, 0, err
	}
	if err := p.drain(ctx); err != nil {
		return 0, 0, 0, 0, err
	}
	d = time.Since(t0)
	var n int
	if err := p.dst.QueryRow(`SELECT count(*) FROM bench`, &n); err != nil {
		return 0, 0, 0, 0, err
	}
	if n != rows {
		return 0, 0, 0, 0, fmt.Errorf("streaming: target has %d rows, want %d", n, rows)
	}
	if err := slotStats(p.src, &spilled, &streamed); err != nil {
		return 0, 0, 0, 0, err
	}
	return d, spilled, streamed, p.proc.PeakRSS(), nil
}

func slotStats(c *pgtest.Cluster, spilled, streamed *int64) error {
	return c.QueryRow(`SELECT spill_bytes, stream_bytes FROM pg_stat_replication_slots WHERE slot_name = 'cdcd'`, spilled, streamed)
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
