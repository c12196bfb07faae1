package preflight_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/dynalitetest"
	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/preflight"
	"github.com/cdcd-io/cdcd/pkg/sink/dynamodb"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
)

// TestDynamoDBSink: `cdcd check` for a dynamodb sink reaches the endpoint
// with the AWS credentials, and finds missing tables and tables keyed
// otherwise than the source's primary key.
func TestDynamoDBSink(t *testing.T) {
	src := pgtest.StartT(t, pgtest.Options{})
	srv := dynalitetest.StartT(t)
	for _, kv := range dynalitetest.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	src.ExecT(t, "postgres",
		`CREATE TABLE orders (customer int, id int, note text, PRIMARY KEY (customer, id))`,
		`CREATE TABLE notes (id text PRIMARY KEY)`,
		`CREATE PUBLICATION cdcd FOR TABLE orders, notes`)
	c := srv.Client()
	_, err := c.CreateTable(context.Background(), &awsddb.CreateTableInput{TableName: aws.String("public_notes"), BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("other"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("other"), KeyType: types.KeyTypeHash}}})
	require.NoError(t, err)
	fast := func(o *awsddb.TableExistsWaiterOptions) { o.MinDelay, o.MaxDelay = 50*time.Millisecond, time.Second }
	require.NoError(t, awsddb.NewTableExistsWaiter(c, fast).Wait(context.Background(), &awsddb.DescribeTableInput{TableName: aws.String("public_notes")}, time.Minute))

	check := func(d dynamodb.Config) map[string]preflight.Result {
		rs := preflight.Run(context.Background(), preflight.Config{
			Source: postgres.Config{DSN: src.DSN("postgres"), Create: true}, TrailDir: t.TempDir(),
			Sinks: []preflight.Sink{{Name: "ddb", Kind: "dynamodb", DynamoDB: &d}},
		})
		got := map[string]preflight.Result{}
		for _, r := range rs {
			got[r.Check] = r
		}
		return got
	}
	got := check(dynamodb.Config{Name: "ddb", Endpoint: srv.Endpoint})
	require.Equal(t, preflight.Pass, got["sink.ddb.connect"].Status, "%+v", got["sink.ddb.connect"])
	require.Equal(t, preflight.Fail, got["sink.ddb.tables"].Status)
	require.Contains(t, got["sink.ddb.tables"].Detail, "public_notes is keyed by partition other (S), public.notes needs partition id (S)")

	_, err = c.DeleteTable(context.Background(), &awsddb.DeleteTableInput{TableName: aws.String("public_notes")})
	require.NoError(t, err)
	require.NoError(t, awsddb.NewTableNotExistsWaiter(c, func(o *awsddb.TableNotExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 50*time.Millisecond, time.Second
	}).Wait(context.Background(), &awsddb.DescribeTableInput{TableName: aws.String("public_notes")}, time.Minute))
	got = check(dynamodb.Config{Name: "ddb", Endpoint: srv.Endpoint})
	require.Equal(t, preflight.Fail, got["sink.ddb.tables"].Status)
	require.Contains(t, got["sink.ddb.tables"].Detail, "2 of 2 tables are missing")
	require.Contains(t, got["sink.ddb.tables"].Detail, "public_orders (for public.orders, keyed by partition customer (N), sort id (N))")
	require.Contains(t, got["sink.ddb.tables"].Remedy, "schema.create: true")
	got = check(dynamodb.Config{Name: "ddb", Endpoint: srv.Endpoint, CreateTables: true})
	require.Equal(t, preflight.Pass, got["sink.ddb.tables"].Status)
	require.Contains(t, got["sink.ddb.tables"].Detail, "2 of 2 tables will be created")

	// Unreachable endpoint: one failure naming the remedy.
	got = check(dynamodb.Config{Name: "ddb", Endpoint: "http://127.0.0.1:1", MaxAttempts: 1})
	require.Equal(t, preflight.Fail, got["sink.ddb.connect"].Status)
	require.Contains(t, got["sink.ddb.connect"].Remedy, "AWS credentials")
}
