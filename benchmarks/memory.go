package main

import (
	"context"
	"fmt"
	"log"
	"time"
)

// benchMemory: cdcd's peak RSS (VmHWM of the cdcd process, started fresh
// for each size) replicating one transaction of each size PG → PG. A source
// transaction larger than a batch is applied in chunks within one target
// transaction, so memory should not grow with the transaction.
func benchMemory(ctx context.Context, e *Env, res *Results) error {
	var srv servers
	defer srv.stop()
	src, err := srv.start(ctx, "mem-src", benchConf)
	if err != nil {
		return err
	}
	dst, err := srv.start(ctx, "mem-dst", benchConf)
	if err != nil {
		return err
	}
	if err := execSQL(ctx, src, applyDDL); err != nil {
		return err
	}
	if err := execSQL(ctx, dst, applyDDL); err != nil {
		return err
	}
	p := &pair{name: "memory", src: src, dst: dst}
	defer p.stopCdcd() // a run that fails midway must not leave cdcd running
	if p.config, err = pipelineConfig(e, "memory", src, dst, ""); err != nil {
		return err
	}
	for _, rows := range e.Size.MemoryRows {
		if err := p.startCdcd(e); err != nil {
			return err
		}
		if err := execSQL(ctx, src, `TRUNCATE bench`); err != nil {
			return err
		}
		if err := p.drain(ctx); err != nil {
			return err
		}
		log.Printf("memory: one transaction of %s rows", human(rows))
		if err := execSQL(ctx, src, fmt.Sprintf(`INSERT INTO bench SELECT g, g %% 1000, 'row ' || g, now(), g * 1.25 FROM generate_series(1, %d) g`, rows)); err != nil {
			return err
		}
		t0 := time.Now()
		if err := p.drain(ctx); err != nil {
			return err
		}
		d := time.Since(t0)
		var n int
		if err := dst.QueryRow(`SELECT count(*) FROM bench`, &n); err != nil {
			return err
		}
		if n != rows {
			return fmt.Errorf("memory: target has %d rows, want %d", n, rows)
		}
		rss := p.proc.PeakRSS()
		if err := p.stopCdcd(); err != nil {
			return err
		}
		res.Memory = append(res.Memory, MemoryPoint{Rows: rows, PeakRSSMiB: float64(rss) / (1 << 20), Seconds: secs(d)})
		fmt.Printf("memory: one %s-row transaction: cdcd peak RSS %.0f MiB, replicated in %.1f s (goal ≤ 150 MiB)\n",
			human(rows), float64(rss)/(1<<20), secs(d))
	}
	return nil
}
