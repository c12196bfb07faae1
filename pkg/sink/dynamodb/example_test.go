package dynamodb_test

import (
	"context"
	"log"
	"log/slog"

	"github.com/cdcd-io/cdcd/pkg/sink/dynamodb"
)

// A sink for DynamoDB Local (or dynalite): credentials come from the AWS
// default chain; orders are keyed by customer and order, every other table
// by its primary key; missing tables are created.
func ExampleNew() {
	s, err := dynamodb.New(context.Background(), dynamodb.Config{
		Name:         "ddb",
		Region:       "us-east-1",
		Endpoint:     "http://127.0.0.1:8000",
		Table:        "{schema}_{table}",
		Keys:         map[string]dynamodb.Key{"public.orders": {Partition: "customer_id", Sort: "order_id"}},
		CreateTables: true,
		Logger:       slog.Default(),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(context.Background())
	// s is an apply worker's sink.Sink, sink.PositionStore and
	// sink.BulkLoader: pipeline.Config.Sinks[i].Open returns it.
}
