package pipeline_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/apply"
	"github.com/cdcd-io/cdcd/pkg/capture"
	"github.com/cdcd-io/cdcd/pkg/mapping"
	"github.com/cdcd-io/cdcd/pkg/pipeline"
	"github.com/cdcd-io/cdcd/pkg/sink"
	pgsink "github.com/cdcd-io/cdcd/pkg/sink/postgres"
	"github.com/cdcd-io/cdcd/pkg/snapshot"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
)

// Example builds a PostgreSQL → PostgreSQL pipeline in Go, without YAML:
// public.customers on the source becomes public.clients on the target, its
// name column renamed to full_name and its email column left out. The
// existing rows arrive by snapshot (which also creates the target table),
// later ones through the stream.
func Example() {
	source, target, trailDir, stop := exampleServers()
	defer stop()

	p, err := pipeline.New(pipeline.Config{
		Capture: capture.Config{
			Source:   postgres.Config{DSN: source, Create: true},
			TrailDir: trailDir,
		},
		Tables: mapping.Config{Tables: []mapping.Table{{
			From:           "public.customers",
			To:             "public.clients",
			RenameColumns:  map[string]string{"name": "full_name"},
			ExcludeColumns: []string{"email"},
		}}},
		Snapshot: pipeline.Snapshot{Mode: snapshot.ModeInitial, CreateSchema: true},
		Sinks: []pipeline.Sink{{
			Apply: apply.Config{Name: "target"},
			Open: func(ctx context.Context) (sink.Sink, error) {
				return pgsink.New(ctx, pgsink.Config{Name: "target", DSN: target}, nil)
			},
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	run(source, `INSERT INTO customers VALUES (2, 'Grace Hopper', 'grace@example.com')`)
	waitRows(target, `SELECT count(*) FROM clients`, 2)
	cancel() // drain: every sink finishes its batch, capture acknowledges
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	printRows(target, `SELECT id, full_name FROM clients ORDER BY id`)
	printRows(target, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'clients' AND column_name = 'email'`)
	// Output:
	// 1 Ada Lovelace
	// 2 Grace Hopper
	// 0
}

// exampleServers starts a throwaway source and target (your own DSNs in
// real use), with one customer already on the source.
func exampleServers() (source, target, trailDir string, stop func()) {
	ctx := context.Background()
	src, err := pgtest.Start(ctx, pgtest.Options{Name: "example-source"})
	if err != nil {
		log.Fatal(err)
	}
	dst, err := pgtest.Start(ctx, pgtest.Options{Name: "example-target"})
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "cdcd-example-trail-")
	if err != nil {
		log.Fatal(err)
	}
	run(src.DSN("postgres"), `CREATE TABLE customers (id int PRIMARY KEY, name text, email text)`,
		`INSERT INTO customers VALUES (1, 'Ada Lovelace', 'ada@example.com')`)
	return src.DSN("postgres"), dst.DSN("postgres"), dir, func() {
		_ = src.Stop()
		_ = dst.Stop()
		_ = os.RemoveAll(dir)
	}
}

func run(dsn string, sql ...string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, s := range sql {
		if _, err := conn.Exec(ctx, s); err != nil {
			log.Fatal(err)
		}
	}
}

// waitRows polls until query returns want (a count), for up to two minutes.
func waitRows(dsn, query string, want int64) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var n int64
		// The table appears only once the snapshot has created it.
		if err := conn.QueryRow(ctx, query).Scan(&n); err == nil && n == want {
			return
		}
		if time.Now().After(deadline) {
			log.Fatalf("%s did not reach %d", query, want)
		}
		time.Sleep(50 * time.Millisecond) // poll interval: the loop waits for the count, not for time
	}
}

func printRows(dsn, query string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, query)
	if err != nil {
		log.Fatal(err)
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(vals...)
	}
	if err := rows.Err(); err != nil {
		log.Fatal(err)
	}
}
