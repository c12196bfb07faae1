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
	meter := cpuMeter{servers: []string{src.DataDir, dst.DataDir}}
	var cdcdCPU, refCPU [3][]float64 // source server, target server, copier
	var mb float64
	for i := range e.Size.Reps {
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		for _, cdcdTurn := range order {
			before := meter.read()
			if cdcdTurn {
				r, err := snapbench.Cdcd(ctx, src.DSN("postgres"), dst.DSN("postgres"), par)
				if err != nil {
					return err
				}
				d := meter.read().sub(before)
				for k, v := range []float64{d.servers[0], d.servers[1], d.self} {
					cdcdCPU[k] = append(cdcdCPU[k], v)
				}
				cdcdRuns = append(cdcdRuns, secs(r.Elapsed))
				mb = float64(r.Bytes) / 1e6
				log.Printf("  cdcd snapshot: %s", r)
			} else {
				r, err := snapbench.PgDump(ctx, bin, src.DSN("postgres"), dst.DSN("postgres"))
				if err != nil {
					return err
				}
				d := meter.read().sub(before)
				for k, v := range []float64{d.servers[0], d.servers[1], d.children} {
					refCPU[k] = append(refCPU[k], v)
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
	// Per million rows, so the sizes compare; the servers' figures include
	// the row count each side's check runs after its copy.
	per := 1e6 / float64(rows)
	res.Notes = append(res.Notes, fmt.Sprintf("snapshot CPU s per 1M rows (medians; source server / target server / copier): "+
		"cdcd %.2f / %.2f / %.2f (cdcd), pg_dump | psql %.2f / %.2f / %.2f (pg_dump + psql)",
		median(cdcdCPU[0])*per, median(cdcdCPU[1])*per, median(cdcdCPU[2])*per,
		median(refCPU[0])*per, median(refCPU[1])*per, median(refCPU[2])*per))
	return nil
}
