package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// A timeline (-timeline DIR) shows where one timed run of a workload spends
// its time: every timelineTick it records the CPU each side used since the
// last tick — the source server (its walsender decodes and sends), the
// target server, the cdcd process — and what the walsender and the
// target's sessions are waiting for. A ratio says who won; the timeline
// says which side was the bottleneck and when (the walsender at a full
// core, the target idle in a transaction while the applier fills the next
// batch…). Each run becomes one tab-separated file in DIR; its last line
// is the run's mean use per side. The sampling adds two small queries and
// two scans of /proc a tick (the sampler's own backends count in their
// servers' figures), so figures from a run with a timeline are not the
// headline ones.
const timelineTick = 250 * time.Millisecond

// timeline samples one run; stop ends it and writes its file.
type timeline struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// watch starts a timeline of pair p's run named what (a no-op without
// -timeline).
func (e *Env) watch(p *pair, what string) *timeline {
	if e.Timeline == "" {
		return nil
	}
	e.timelines++
	path := filepath.Join(e.Timeline, fmt.Sprintf("%03d-%s-%s.tsv", e.timelines, what, p.name))
	ctx, cancel := context.WithCancel(context.Background())
	t := &timeline{cancel: cancel, done: make(chan struct{})}
	pid := 0
	if p.proc != nil {
		pid = p.proc.cmd.Process.Pid
	}
	go func() {
		defer close(t.done)
		if err := sample(ctx, path, p.src, p.dst, pid); err != nil {
			log.Printf("timeline %s: %v", path, err)
		}
	}()
	return t
}

func (t *timeline) stop() {
	if t == nil {
		return
	}
	t.cancel()
	<-t.done
}

// sample writes the timeline of src, dst and the cdcd process pid (0: none)
// to path until ctx ends.
func sample(ctx context.Context, path string, src, dst *pgtest.Cluster, pid int) error {
	// Each query gets timelineTick: a server that stops answering ends a
	// row's wait column with "?", not the harness.
	bounded := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), timelineTick)
	}
	connect := func(c *pgtest.Cluster) (*pgx.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return pgx.Connect(ctx, c.DSN("postgres"))
	}
	sc, err := connect(src)
	if err != nil {
		return err
	}
	defer sc.Close(context.Background())
	dc, err := connect(dst)
	if err != nil {
		return err
	}
	defer dc.Close(context.Background())
	// waits summarises the sessions a query returns as "state:wait ×n".
	waits := func(c *pgx.Conn, q string) string {
		ctx, cancel := bounded()
		defer cancel()
		rows, err := c.Query(ctx, q)
		if err != nil {
			return "?"
		}
		counts := map[string]int{}
		var order []string
		for rows.Next() {
			var s string
			if rows.Scan(&s) == nil {
				if counts[s] == 0 {
					order = append(order, s)
				}
				counts[s]++
			}
		}
		if rows.Err() != nil {
			return "?"
		}
		var parts []string
		for _, s := range order {
			if counts[s] > 1 {
				s = fmt.Sprintf("%s×%d", s, counts[s])
			}
			parts = append(parts, s)
		}
		if len(parts) == 0 {
			return "-"
		}
		return strings.Join(parts, " ")
	}
	const session = `coalesce(state, '') || ':' || coalesce(wait_event, 'CPU')`
	walsender := `SELECT ` + session + ` FROM pg_stat_activity WHERE backend_type = 'walsender'`
	target := `SELECT ` + session + ` FROM pg_stat_activity
		WHERE backend_type IN ('client backend', 'logical replication worker') AND pid <> pg_backend_pid()
		ORDER BY pid`
	cdcdCPU := func() float64 {
		if pid == 0 {
			return 0
		}
		f, _ := procStat(pid)
		return f.utime + f.stime
	}
	var b strings.Builder
	b.WriteString("seconds\tsource_cores\ttarget_cores\tcdcd_cores\twalsender\ttarget_sessions\n")
	start := time.Now()
	last, lastAt := [3]float64{serverCPU(src.DataDir), serverCPU(dst.DataDir), cdcdCPU()}, start
	var sum [3]float64
	row := func(now time.Time) {
		cur := [3]float64{serverCPU(src.DataDir), serverCPU(dst.DataDir), cdcdCPU()}
		dt := now.Sub(lastAt).Seconds()
		fmt.Fprintf(&b, "%.2f", now.Sub(start).Seconds())
		for i := range cur {
			d := max(cur[i]-last[i], 0)
			sum[i] += d
			fmt.Fprintf(&b, "\t%.2f", d/max(dt, 1e-3))
		}
		fmt.Fprintf(&b, "\t%s\t%s\n", waits(sc, walsender), waits(dc, target))
		last, lastAt = cur, now
	}
	tick := time.NewTicker(timelineTick)
	defer tick.Stop()
	for {
		select {
		case now := <-tick.C:
			row(now)
		case <-ctx.Done():
			row(time.Now())
			span := time.Since(start).Seconds()
			fmt.Fprintf(&b, "# mean over %.2fs\t%.2f\t%.2f\t%.2f\n", span, sum[0]/span, sum[1]/span, sum[2]/span)
			return os.WriteFile(path, []byte(b.String()), 0o644)
		}
	}
}
