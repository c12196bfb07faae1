package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/cutover"
)

// benchCutover: the write-unavailable time of `cdcd cutover` (fence → hook
// done) from a PG15 blue to a PG17 green kept in sync by `cdcd run`, while
// pgbench writes to blue through a TCP proxy that the hook points at green;
// per mode (--verify=counts, goal ≤ 5 s; --verify=after, goal ≤ 1 s), the
// median of Reps cutovers on fresh servers. The ratio is goal / measured
// (≥ 1: within the goal); the per-step breakdown of the median run is in
// the notes.
func benchCutover(ctx context.Context, e *Env, res *Results) error {
	for _, m := range []struct {
		mode string
		goal float64
	}{{cutover.VerifyCounts, 5}, {cutover.VerifyAfter, 1}} {
		var runs, goals []float64
		var reps []*cutover.Report
		for i := range e.Size.Reps {
			rep, err := oneCutover(ctx, e, m.mode, i)
			if err != nil {
				return err
			}
			log.Printf("  cutover --verify=%s: write-unavailable %.3fs", m.mode, rep.WriteUnavailableSeconds)
			runs = append(runs, rep.WriteUnavailableSeconds)
			goals = append(goals, m.goal)
			reps = append(reps, rep)
		}
		x := res.addRatio("cutover."+m.mode, fmt.Sprintf("cutover --verify=%s under pgbench: write-unavailable s (goal ≤ %.0f s)", m.mode, m.goal),
			"1/pause-s", 1, fmt.Sprintf("goal %.0f s", m.goal), 1.0, runs, goals)
		med := median(runs)
		i := slices.IndexFunc(reps, func(r *cutover.Report) bool { return r.WriteUnavailableSeconds == med })
		var steps []string
		for _, s := range reps[max(i, 0)].Steps {
			steps = append(steps, fmt.Sprintf("%s %.3fs", s.Name, s.Seconds))
		}
		res.Notes = append(res.Notes, fmt.Sprintf("cutover --verify=%s: write-unavailable median %.3fs (runs %v; ratio %.2f = goal/measured); median run: %s",
			m.mode, med, runs, x.Ratio, strings.Join(steps, ", ")))
	}
	return nil
}

func oneCutover(ctx context.Context, e *Env, mode string, rep int) (*cutover.Report, error) {
	var srv servers
	defer srv.stop()
	blue, err := srv.start(ctx, "blue", benchConf)
	if err != nil {
		return nil, err
	}
	green, err := pgtest.Start(ctx, pgtest.Options{Name: "green", Version: pgtest.V17, Conf: benchConf})
	if err != nil {
		return nil, err
	}
	srv = append(srv, green)
	bin, err := pgtest.BinDir(pgtest.V15)
	if err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, filepath.Join(bin, "pgbench"), "-i", "-q", "-s", fmt.Sprint(e.Size.TriggerPgbenchScale), blue.DSN("postgres")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}
	for _, c := range []*pgtest.Cluster{blue, green} {
		if err := c.Exec(ctx, "postgres", `CREATE TABLE orders (id bigserial PRIMARY KEY, note text)`); err != nil {
			return nil, err
		}
	}
	dir := filepath.Join(e.Work, fmt.Sprintf("cutover-%s-%d", mode, rep))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	proxy, err := pgtest.StartProxy(fmt.Sprintf("127.0.0.1:%d", blue.Port), dir)
	if err != nil {
		return nil, err
	}
	defer proxy.Close()
	cfg := filepath.Join(dir, "cdcd.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
source: { dsn: %q, create: true }
trail: { dir: %q }
snapshot: { mode: initial }
schema: { create: true }
sinks:
  - { name: green, kind: postgres, dsn: %q }
http: { listen: "off" }
log: { level: warn }
cutover: { hook: "echo 127.0.0.1:%d > %s" }
`, blue.DSN("postgres"), filepath.Join(dir, "trail"), green.DSN("postgres"), green.Port, proxy.BackendFile)), 0o600); err != nil {
		return nil, err
	}
	run := exec.CommandContext(ctx, e.Bin, "run", "--config", cfg)
	var runLog strings.Builder
	run.Stdout, run.Stderr = &runLog, &runLog
	if err := run.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = run.Process.Signal(syscall.SIGTERM)
		_ = run.Wait()
	}()
	if err := waitGreen(ctx, blue, green, 5*time.Minute); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, runLog.String())
	}
	load, err := pgtest.StartLoad(fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", proxy.Port), 4, dir)
	if err != nil {
		return nil, err
	}
	defer load.Stop()
	select { // a running load, then the cutover under it
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(5 * time.Second):
	}
	out, err := exec.CommandContext(ctx, e.Bin, "cutover", "--config", cfg, "--verify", mode, "--json").Output()
	var r cutover.Report
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		return nil, fmt.Errorf("cdcd cutover: %v / %v\n%s", err, jerr, out)
	}
	if err != nil || !r.Switched {
		return nil, fmt.Errorf("cdcd cutover did not switch: %v: %s", err, r.Error)
	}
	return &r, nil
}

// waitGreen waits until green's sink is past a marker committed on blue.
func waitGreen(ctx context.Context, blue, green *pgtest.Cluster, timeout time.Duration) error {
	var s string
	if err := blue.QueryRow("SELECT pg_logical_emit_message(true, 'bench', 'm')::text", &s); err != nil {
		return err
	}
	m, err := change.ParseLSN(s)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, green.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var end string
		if conn.QueryRow(ctx, "SELECT end_lsn::text FROM cdcd.checkpoint WHERE name = 'green'").Scan(&end) == nil {
			if l, err := change.ParseLSN(end); err == nil && l > m {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("green not in sync after %s", timeout)
}
