// Package snapbench measures a cdcd snapshot against `pg_dump -t | psql`
// on the same servers: the reusable part of BenchmarkSnapshotVsPgDump, for
// the benchmarks/ driver too.
package snapbench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcd-io/cdcd/pkg/sink"
	pgsink "github.com/cdcd-io/cdcd/pkg/sink/postgres"
	"github.com/cdcd-io/cdcd/pkg/snapshot"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
)

// Result is one timed copy.
type Result struct {
	Rows    int64
	Bytes   int64 // the source table's size (pg_table_size)
	Elapsed time.Duration
}

// RowsPerSec is the copy's row rate.
func (r Result) RowsPerSec() float64 { return float64(r.Rows) / r.Elapsed.Seconds() }

// MBPerSec is the copy's rate in MB (10^6 bytes) of source table per second.
func (r Result) MBPerSec() float64 { return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds() }

func (r Result) String() string {
	return fmt.Sprintf("%d rows in %s: %.0f rows/s, %.1f MB/s", r.Rows, r.Elapsed.Round(time.Millisecond), r.RowsPerSec(), r.MBPerSec())
}

// PrepareOrders creates the `orders` table of the Citus sharding guides on
// the source database and fills it with rows rows, plus the publication
// and slot a snapshot needs.
func PrepareOrders(ctx context.Context, srcDSN string, rows int64) error {
	conn, err := pgx.Connect(ctx, srcDSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, q := range []string{
		`DROP TABLE IF EXISTS orders`,
		`CREATE TABLE orders (order_id bigserial, shard_key int PRIMARY KEY, n int, description char(100))`,
		fmt.Sprintf(`INSERT INTO orders (shard_key, n, description) SELECT g, g %% 1000, md5(g::text) FROM generate_series(1, %d) g`, rows),
		`VACUUM ANALYZE orders`,
		`CREATE PUBLICATION snapbench FOR TABLE orders`,
		`SELECT pg_create_logical_replication_slot('snapbench', 'pgoutput')`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%.60s: %w", q, err)
		}
	}
	return nil
}

// freshDatabase drops and re-creates database db on the server of adminDSN
// and returns a DSN for it.
func freshDatabase(ctx context.Context, adminDSN, db string) (string, error) {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	for _, q := range []string{"DROP DATABASE IF EXISTS " + db + " WITH (FORCE)", "CREATE DATABASE " + db} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return "", err
		}
	}
	cfg, err := pgconn.ParseConfig(adminDSN)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", cfg.Host, cfg.Port, cfg.User, db), nil
}

func tableSize(ctx context.Context, dsn string) (rows, bytes int64, err error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(context.Background())
	err = conn.QueryRow(ctx, `SELECT count(*), pg_table_size('orders') FROM orders`).Scan(&rows, &bytes)
	return rows, bytes, err
}

// Cdcd copies orders from the source into a fresh target database with a
// cdcd snapshot (schema creation, parallelism workers, binary COPY).
func Cdcd(ctx context.Context, srcDSN, dstAdminDSN string, parallelism int) (Result, error) {
	rows, bytes, err := tableSize(ctx, srcDSN)
	if err != nil {
		return Result{}, err
	}
	dst, err := freshDatabase(ctx, dstAdminDSN, "snapbench_cdcd")
	if err != nil {
		return Result{}, err
	}
	dir, err := os.MkdirTemp("", "snapbench-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("CDCD_BENCH_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	r, err := snapshot.New(snapshot.Config{
		Mode: snapshot.ModeInitial, Parallelism: parallelism, CreateSchema: true,
		Source:   postgres.Config{DSN: srcDSN, Slot: "snapbench", Publication: "snapbench"},
		StateDir: dir, Sink: "bench", Logger: log,
		Open: func(ctx context.Context) (sink.Sink, error) {
			return pgsink.New(ctx, pgsink.Config{Name: "bench", DSN: dst}, log)
		},
	})
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	if err := r.Run(ctx); err != nil {
		return Result{}, err
	}
	res := Result{Rows: rows, Bytes: bytes, Elapsed: time.Since(start)}
	if got, _, err := tableSize(ctx, dst); err != nil || got != rows {
		return res, fmt.Errorf("cdcd copied %d rows of %d: %v", got, rows, err)
	}
	return res, nil
}

// PgDump copies orders with `pg_dump -t orders | psql` into a fresh target
// database; binDir holds pg_dump and psql.
func PgDump(ctx context.Context, binDir, srcDSN, dstAdminDSN string) (Result, error) {
	rows, bytes, err := tableSize(ctx, srcDSN)
	if err != nil {
		return Result{}, err
	}
	dst, err := freshDatabase(ctx, dstAdminDSN, "snapbench_dump")
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c",
		`"$1" -t orders --no-publications --no-subscriptions "$2" | "$3" -q -v ON_ERROR_STOP=1 "$4" >/dev/null`,
		"sh", filepath.Join(binDir, "pg_dump"), srcDSN, filepath.Join(binDir, "psql"), dst)
	if out, err := cmd.CombinedOutput(); err != nil {
		return Result{}, fmt.Errorf("pg_dump | psql: %v: %s", err, out)
	}
	res := Result{Rows: rows, Bytes: bytes, Elapsed: time.Since(start)}
	if got, _, err := tableSize(ctx, dst); err != nil || got != rows {
		return res, fmt.Errorf("pg_dump | psql copied %d rows of %d: %v", got, rows, err)
	}
	return res, nil
}
