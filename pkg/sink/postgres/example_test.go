package postgres_test

import (
	"context"
	"log/slog"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/sink/postgres"
)

// A sink applies batches and remembers where it is: after a restart, apply
// resumes after Position.
func Example() {
	ctx := context.Background()
	s, err := postgres.New(ctx, postgres.Config{
		Name: "aurora",
		DSN:  "postgres://cdcd@aurora.example.com:5432/app?sslmode=verify-full&sslrootcert=/etc/cdcd/rds-ca.pem",
		IAM:  postgres.IAMConfig{Region: "eu-west-1"},
	}, slog.Default())
	if err != nil {
		return // sink.IsRetriable(err) tells whether to try again later
	}
	defer s.Close(ctx)

	from, err := s.Position(ctx)
	if err != nil {
		return
	}
	orders := &change.Relation{Schema: "app", Name: "orders", PrimaryKey: []int{0},
		Columns: []change.Column{{Name: "id"}, {Name: "status"}}}
	err = s.Apply(ctx, &sink.Batch{
		Txs: []sink.Tx{{Tx: &change.Tx{EndLSN: 0x16B374D848}, Changes: []*change.Change{
			{Op: change.OpInsert, Relation: orders, New: change.Row{change.Text("1"), change.Text("new")}},
		}}},
		Position: sink.Position{Seq: from.Seq + 3, EndLSN: 0x16B374D848},
	})
	_ = err
}
