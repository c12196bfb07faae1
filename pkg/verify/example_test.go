package verify_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/mapping"
	"github.com/cdcd-io/cdcd/pkg/verify"
)

// ExampleRun compares a source table with its renamed copy on a target
// (column name renamed to full_name, column email left out) and names the
// row that differs. Without Daemon the two databases are compared as they
// are; with it (a running cdcd's http endpoint) the sinks are held at the
// source snapshot's exact position, so a busy source verifies too.
func ExampleRun() {
	ctx := context.Background()
	src, err := pgtest.Start(ctx, pgtest.Options{Name: "source"})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Stop()
	dst, err := pgtest.Start(ctx, pgtest.Options{Name: "target"})
	if err != nil {
		log.Fatal(err)
	}
	defer dst.Stop()
	must(src.Exec(ctx, "postgres", `CREATE TABLE customers (id int PRIMARY KEY, name text, email text)`,
		`INSERT INTO customers VALUES (1, 'Ada Lovelace', 'ada@example.com'), (2, 'Grace Hopper', 'grace@example.com')`))
	must(dst.Exec(ctx, "postgres", `CREATE TABLE clients (id int PRIMARY KEY, full_name text)`,
		`INSERT INTO clients VALUES (1, 'Ada Lovelace'), (2, 'Grace Murray Hopper')`))

	m, err := mapping.New(mapping.Config{Tables: []mapping.Table{{
		From: "public.customers", To: "public.clients",
		RenameColumns: map[string]string{"name": "full_name"}, ExcludeColumns: []string{"email"},
	}}})
	must(err)
	res, err := verify.Run(ctx, verify.Config{
		SourceDSN: src.DSN("postgres"),
		Targets:   []verify.Target{{Name: "target", DSN: dst.DSN("postgres")}},
		Map:       m,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err) // verify: tables differ
	}
	for _, x := range res.Targets[0].Tables {
		fmt.Println(x.Source, "→", x.Target, "match:", x.Match, "changed:", x.Changed)
	}
	// Output:
	// public.customers → public.clients match: false changed: [(id)=(2)]
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
