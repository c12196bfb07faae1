package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/cdcd-io/cdcd/internal/snapbench"
)

// benchVerify: `cdcd verify` of the 5M-row `orders` table (identical on two
// servers; no daemon, so the static comparison) against the plain check a
// user would write, an md5 of string_agg over the rows in key order, run on both
// servers side by side.
func benchVerify(ctx context.Context, e *Env, res *Results) error {
	var srv servers
	defer srv.stop()
	src, err := srv.start(ctx, "verify-src", benchConf)
	if err != nil {
		return err
	}
	dst, err := srv.start(ctx, "verify-dst", benchConf)
	if err != nil {
		return err
	}
	rows := e.Size.SnapshotRows
	log.Printf("verify: preparing %s rows of orders on both servers", human(rows))
	for _, c := range []string{src.DSN("postgres"), dst.DSN("postgres")} {
		if err := snapbench.PrepareOrders(ctx, c, int64(rows)); err != nil {
			return err
		}
	}
	cfg := filepath.Join(e.Work, "verify.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("source: { dsn: %q }\ntrail: { dir: %q }\nsinks:\n  - { name: dst, kind: postgres, dsn: %q }\nhttp: { listen: \"off\" }\nlog: { level: warn }\n",
		src.DSN("postgres"), filepath.Join(e.Work, "verify-trail"), dst.DSN("postgres"))), 0o600); err != nil {
		return err
	}
	const md5SQL = `SELECT md5(string_agg(o::text, '' ORDER BY shard_key)) FROM orders o`
	var cdcdRuns, refRuns []float64
	for i := range e.Size.Reps {
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		for _, cdcdTurn := range order {
			t0 := time.Now()
			if cdcdTurn {
				out, err := exec.CommandContext(ctx, e.Bin, "verify", "--config", cfg, "--static").CombinedOutput()
				if err != nil {
					return fmt.Errorf("cdcd verify: %v\n%s", err, out)
				}
				cdcdRuns = append(cdcdRuns, secs(time.Since(t0)))
				log.Printf("  cdcd verify: %.2fs", cdcdRuns[len(cdcdRuns)-1])
				continue
			}
			sums := make([]string, 2)
			g, gctx := errgroup.WithContext(ctx)
			for j, c := range []string{src.DSN("postgres"), dst.DSN("postgres")} {
				g.Go(func() error {
					conn, err := pgx.Connect(gctx, c)
					if err != nil {
						return err
					}
					defer conn.Close(context.Background())
					return conn.QueryRow(gctx, md5SQL).Scan(&sums[j])
				})
			}
			if err := g.Wait(); err != nil {
				return fmt.Errorf("md5(string_agg): %w", err)
			}
			if sums[0] != sums[1] {
				return fmt.Errorf("md5(string_agg) differs between identical tables: %s %s", sums[0], sums[1])
			}
			refRuns = append(refRuns, secs(time.Since(t0)))
			log.Printf("  md5(string_agg) side by side: %.2fs", refRuns[len(refRuns)-1])
		}
	}
	res.addRatio("verify.orders", fmt.Sprintf("verify %s-row orders (static, 4 ranges at once)", human(rows)), "rows/s", float64(rows),
		"md5(string_agg) side by side", 2.0, cdcdRuns, refRuns)
	return nil
}
