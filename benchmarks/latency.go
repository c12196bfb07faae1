package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// benchLatency: commit → applied latency under a steady pgbench rate of
// single-row insert transactions, cdcd vs native logical replication. The
// source row carries clock_timestamp() of its insert (the transaction
// commits right after); the target table has one more column,
// applied_at DEFAULT clock_timestamp(), filled when the row is applied.
// Both servers run on this machine, so the two clocks are one.
func benchLatency(ctx context.Context, e *Env, res *Results) error {
	var srv servers
	defer srv.stop()
	pgbench, err := pgBin("pgbench")
	if err != nil {
		return err
	}
	cd, nat, err := startPairs(ctx, e, &srv, benchConf, func(c *pgtest.Cluster, target bool) error {
		ddl := `CREATE TABLE lat (id bigserial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT clock_timestamp(), pad text)`
		if target {
			ddl = `CREATE TABLE lat (id bigint PRIMARY KEY, ts timestamptz NOT NULL, pad text, applied_at timestamptz NOT NULL DEFAULT clock_timestamp())`
		}
		return execSQL(ctx, c, ddl, `CREATE TABLE marker (id int PRIMARY KEY)`)
	})
	if err != nil {
		return err
	}
	defer cd.stopCdcd()
	script := filepath.Join(e.Work, "latency.sql")
	if err := os.WriteFile(script, []byte("INSERT INTO lat (pad) VALUES (repeat('x', 100));\n"), 0o644); err != nil {
		return err
	}
	rate, dur := e.Size.LatencyRate, e.Size.LatencyTime
	for _, p := range []*pair{cd, nat} {
		log.Printf("latency: %s at %d tx/s for %v", p.name, rate, dur)
		out, err := exec.CommandContext(ctx, pgbench, "-n", "-c", "2", "-j", "1", "-R", fmt.Sprint(rate), "-T", fmt.Sprint(int(dur.Seconds())),
			"-f", script, "-d", p.src.DSN("postgres")).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pgbench: %v\n%s", err, out)
		}
		if err := p.drain(ctx); err != nil {
			return err
		}
		l, err := latencies(ctx, p.dst)
		if err != nil {
			return err
		}
		l.System, l.Rate = p.name, rate
		if p == nat {
			l.System = "native logical replication"
		}
		res.Latency = append(res.Latency, l)
		fmt.Printf("latency %-28s p50 %6.1f ms  p95 %6.1f ms  p99 %6.1f ms  max %6.1f ms (%d samples, goal p99 ≤ 100 ms)\n",
			l.System, l.P50, l.P95, l.P99, l.Max, l.Samples)
	}
	return nil
}

func latencies(ctx context.Context, dst *pgtest.Cluster) (Latency, error) {
	conn, err := pgx.Connect(ctx, dst.DSN("postgres"))
	if err != nil {
		return Latency{}, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT extract(epoch FROM applied_at - ts) * 1000 FROM lat`)
	if err != nil {
		return Latency{}, err
	}
	var ms []float64
	for rows.Next() {
		var v float64
		if err := rows.Scan(&v); err != nil {
			return Latency{}, err
		}
		ms = append(ms, v)
	}
	if err := rows.Err(); err != nil {
		return Latency{}, err
	}
	if len(ms) == 0 {
		return Latency{}, fmt.Errorf("no rows applied to measure latency on")
	}
	slices.Sort(ms)
	return Latency{Samples: len(ms), P50: percentile(ms, 50), P95: percentile(ms, 95), P99: percentile(ms, 99), Max: ms[len(ms)-1], sorted: ms}, nil
}
