package snapshot_test

import (
	"os"
	"strconv"
	"testing"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/internal/snapbench"
)

// BenchmarkSnapshotVsPgDump copies the orders table (CDCD_BENCH_ROWS rows,
// default 5M) from a PG15 source into an empty PG15 target, with a cdcd
// snapshot and with pg_dump -t orders | psql, alternating
// (CDCD_BENCH_ROUNDS rounds, default 2), and reports both rates and the
// ratio. Run with -benchtime 1x.
func BenchmarkSnapshotVsPgDump(b *testing.B) {
	rows := envInt("CDCD_BENCH_ROWS", 5_000_000)
	rounds := int(envInt("CDCD_BENCH_ROUNDS", 2))
	par := int(envInt("CDCD_BENCH_PARALLELISM", 4))
	src := pgtest.StartT(b, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(b, pgtest.Options{Name: "target"})
	bin, err := pgtest.BinDir(pgtest.V15)
	if err != nil {
		b.Fatal(err)
	}
	if err := snapbench.PrepareOrders(b.Context(), src.DSN("postgres"), rows); err != nil {
		b.Fatal(err)
	}
	var cd, pd []snapbench.Result
	for b.Loop() {
		for i := range rounds {
			run := []func(){
				func() {
					r, err := snapbench.Cdcd(b.Context(), src.DSN("postgres"), dst.DSN("postgres"), par)
					if err != nil {
						b.Fatal(err)
					}
					b.Logf("cdcd snapshot:   %s", r)
					cd = append(cd, r)
				},
				func() {
					r, err := snapbench.PgDump(b.Context(), bin, src.DSN("postgres"), dst.DSN("postgres"))
					if err != nil {
						b.Fatal(err)
					}
					b.Logf("pg_dump | psql:  %s", r)
					pd = append(pd, r)
				},
			}
			if i%2 == 1 {
				run[0], run[1] = run[1], run[0]
			}
			run[0]()
			run[1]()
		}
	}
	c, p := best(cd), best(pd)
	b.ReportMetric(c.RowsPerSec(), "cdcd_rows/s")
	b.ReportMetric(c.MBPerSec(), "cdcd_MB/s")
	b.ReportMetric(p.RowsPerSec(), "pgdump_rows/s")
	b.ReportMetric(p.MBPerSec(), "pgdump_MB/s")
	b.ReportMetric(c.RowsPerSec()/p.RowsPerSec(), "ratio")
	b.Logf("best of %d: cdcd %s; pg_dump|psql %s; ratio %.2fx", rounds, c, p, c.RowsPerSec()/p.RowsPerSec())
}

func best(rs []snapbench.Result) snapbench.Result {
	b := rs[0]
	for _, r := range rs[1:] {
		if r.Elapsed < b.Elapsed {
			b = r
		}
	}
	return b
}

func envInt(name string, def int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil && v > 0 {
		return v
	}
	return def
}
