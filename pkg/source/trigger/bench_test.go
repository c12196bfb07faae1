package trigger_test

import (
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

// BenchmarkBulk measures one 100k-row INSERT and one 100k-row UPDATE
// without triggers, with statement-level triggers (transition tables) and
// with row-level triggers. Run with -benchtime=3x; compare rows/s.
func BenchmarkBulk(b *testing.B) {
	c := pgtest.StartT(b, pgtest.Options{Name: "source"})
	conn := connect(b, c, "")
	ctx := context.Background()
	const rows = 100_000
	for _, kind := range []string{"none", "statement", "row"} {
		for _, op := range []string{"insert", "update"} {
			b.Run(kind+"/"+op, func(b *testing.B) {
				_, err := conn.Exec(ctx, `DROP TABLE IF EXISTS bulk; CREATE TABLE bulk (id int PRIMARY KEY, v int, note text, at timestamptz)`)
				require.NoError(b, err)
				if kind != "none" {
					require.NoError(b, trigger.Install(ctx, conn, []trigger.Table{{Schema: "public", Name: "bulk"}}, trigger.Options{RowTriggers: kind == "row"}))
				}
				for i := 0; b.Loop(); i++ {
					b.StopTimer()
					reset := `TRUNCATE bulk`
					if kind != "none" {
						reset += `; TRUNCATE cdcd.change_log`
					}
					_, err := conn.Exec(ctx, reset)
					require.NoError(b, err)
					if op == "update" {
						_, err = conn.Exec(ctx, `INSERT INTO bulk SELECT g, g, 'note ' || g, now() FROM generate_series(1, 100000) g`)
						require.NoError(b, err)
						if kind != "none" {
							_, err = conn.Exec(ctx, `TRUNCATE cdcd.change_log`)
							require.NoError(b, err)
						}
					}
					b.StartTimer()
					if op == "insert" {
						_, err = conn.Exec(ctx, `INSERT INTO bulk SELECT g, g, 'note ' || g, now() FROM generate_series(1, 100000) g`)
					} else {
						_, err = conn.Exec(ctx, `UPDATE bulk SET v = v + 1`)
					}
					require.NoError(b, err)
				}
				b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}

// BenchmarkPgbench runs pgbench TPC-B (-c 2 -T 15, scale 1) without and
// then with cdcd's triggers on all four pgbench tables, reports both tps
// and their ratio, then polls the change log and checks that it holds
// exactly the pgbench_history rows written. Run with -benchtime=1x.
func BenchmarkPgbench(b *testing.B) {
	c := pgtest.StartT(b, pgtest.Options{Name: "source"})
	conn := connect(b, c, "")
	ctx := context.Background()
	const bin = "/usr/lib/postgresql/15/bin/pgbench"
	run := func(args ...string) string {
		out, err := exec.CommandContext(ctx, bin, append(args, c.DSN("postgres"))...).CombinedOutput()
		require.NoError(b, err, string(out))
		return string(out)
	}
	tpsRE := regexp.MustCompile(`tps = ([0-9.]+)`)
	tps := func(out string) float64 {
		m := tpsRE.FindStringSubmatch(out)
		require.NotNil(b, m, out)
		f, err := strconv.ParseFloat(m[1], 64)
		require.NoError(b, err)
		return f
	}
	for b.Loop() {
		run("-i", "-s", "1", "-q")
		without := tps(run("-c", "2", "-T", "15", "-n"))
		var tables []trigger.Table
		for _, n := range []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"} {
			tables = append(tables, trigger.Table{Schema: "public", Name: n})
		}
		// pgbench_history has no key: it is insert-only, captured with
		// whole old rows should anything update or delete it.
		require.NoError(b, trigger.Install(ctx, conn, tables, trigger.Options{AllowKeyless: true}))
		_, err := conn.Exec(ctx, `TRUNCATE pgbench_history`)
		require.NoError(b, err)
		pos, err := trigger.Start(ctx, conn)
		require.NoError(b, err)
		with := tps(run("-c", "2", "-T", "15", "-n"))
		b.ReportMetric(without, "tps-without")
		b.ReportMetric(with, "tps-with")
		b.ReportMetric(with/without, "ratio")

		start := time.Now()
		batch, err := trigger.NewReader().Poll(ctx, conn, pos)
		require.NoError(b, err)
		var hist int
		for _, tx := range batch.Txs {
			for _, ch := range tx.Changes {
				if ch.Op == change.OpInsert && ch.Relation.Name == "pgbench_history" {
					hist++
				}
			}
		}
		var want int
		require.NoError(b, conn.QueryRow(ctx, `SELECT count(*) FROM pgbench_history`).Scan(&want))
		require.Equal(b, want, hist, "pgbench_history row count exact")
		b.Logf("tps without %.0f, with triggers %.0f (ratio %.2f); %d transactions, %d change rows read in %s",
			without, with, with/without, len(batch.Txs), batch.Rows, time.Since(start).Round(time.Millisecond))
		require.NoError(b, trigger.Uninstall(ctx, conn))
	}
}
