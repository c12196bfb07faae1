package main

import (
	"context"
	"fmt"
	"log"
	"runtime"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/internal/snapbench"
)

// benchSnapshot: the initial copy of the `orders` table of the Citus
// sharding guides (order_id bigserial, shard_key int primary key, n int,
// description char(100)) into an empty PostgreSQL target — cdcd's snapshot
// (schema creation, parallel binary COPY in key ranges, primary key built
// after the load) vs `pg_dump -t orders | psql` between the same servers.
func benchSnapshot(ctx context.Context, e *Env, res *Results) error {
	var srv servers
	defer srv.stop()
	src, err := srv.start(ctx, "snap-src", benchConf)
	if err != nil {
		return err
	}
	dst, err := srv.start(ctx, "snap-dst", benchConf)
	if err != nil {
		return err
	}
	rows := e.Size.SnapshotRows
	log.Printf("snapshot: preparing %s rows of orders", human(rows))
	if err := snapbench.PrepareOrders(ctx, src.DSN("postgres"), int64(rows)); err != nil {
		return err
	}
	bin, err := pgtest.BinDir(pgtest.V15)
	if err != nil {
		return err
	}
	par := max(2, runtime.NumCPU())
	var cdcdRuns, refRuns []float64
	var mb float64
	for i := range e.Size.Reps {
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		for _, cdcdTurn := range order {
			if cdcdTurn {
				r, err := snapbench.Cdcd(ctx, src.DSN("postgres"), dst.DSN("postgres"), par)
				if err != nil {
					return err
				}
				cdcdRuns = append(cdcdRuns, secs(r.Elapsed))
				mb = float64(r.Bytes) / 1e6
				log.Printf("  cdcd snapshot: %s", r)
			} else {
				r, err := snapbench.PgDump(ctx, bin, src.DSN("postgres"), dst.DSN("postgres"))
				if err != nil {
					return err
				}
				refRuns = append(refRuns, secs(r.Elapsed))
				log.Printf("  pg_dump | psql: %s", r)
			}
		}
	}
	x := res.addRatio("snapshot.orders", fmt.Sprintf("snapshot %s-row orders (%d workers)", human(rows), par), "rows/s", float64(rows),
		"pg_dump -t | psql", 1.5, cdcdRuns, refRuns)
	res.Notes = append(res.Notes, fmt.Sprintf("snapshot: %.0f MB of table; cdcd %.1f MB/s, pg_dump | psql %.1f MB/s",
		mb, mb*x.Cdcd/float64(rows), mb*x.Ref/float64(rows)))
	return nil
}
