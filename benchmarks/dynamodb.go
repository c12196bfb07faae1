package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/cdcd-io/cdcd/internal/dynalitetest"
	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
)

// ddbWriters is the sink's default number of BatchWriteItem calls in flight
// per snapshot worker; the reference loader gets as many calls in flight as
// cdcd's workers together.
const ddbWriters = 8

// benchDynamoDB: against dynalite (DynamoDB's API on Node, the bottleneck
// here), (a) the snapshot of an orders table through cdcd (schema.create,
// parallel readers, the sink's parallel BatchWriteItem) vs a straightforward
// loader — one SELECT streamed into BatchWriteItem calls of 25 items with
// the same SDK and the same number of calls in flight — and (b) a live stream of
// rows in 100-row transactions, cdcd PG → DynamoDB vs cdcd capture only,
// with the sink's CPU per 1,000 items and peak RSS. Every run gets a fresh
// dynalite.
func benchDynamoDB(ctx context.Context, e *Env, res *Results) error {
	for _, kv := range dynalitetest.Env() {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	var srv servers
	defer srv.stop()
	conf := map[string]string{"max_replication_slots": "40", "max_wal_senders": "40"}
	for k, v := range benchConf {
		conf[k] = v
	}
	pg, err := srv.start(ctx, "dynamodb", conf)
	if err != nil {
		return err
	}
	loader, err := benchDynamoDBSnapshot(ctx, e, res, pg)
	if err != nil {
		return err
	}
	return benchDynamoDBStream(ctx, e, res, pg, loader)
}

// benchDynamoDBSnapshot returns the reference loader's rate: what dynalite
// takes on this machine.
func benchDynamoDBSnapshot(ctx context.Context, e *Env, res *Results, pg *pgtest.Cluster) (float64, error) {
	rows := e.Size.DynamoDBSnapshotRows
	log.Printf("dynamodb snapshot: preparing %s rows of orders", human(rows))
	if err := execSQL(ctx, pg,
		`CREATE TABLE orders (order_id bigserial, shard_key int PRIMARY KEY, n int, description char(100))`,
		fmt.Sprintf(`INSERT INTO orders (shard_key, n, description) SELECT g, g %% 1000, md5(g::text) FROM generate_series(1, %d) g`, rows),
		`VACUUM ANALYZE orders`,
		`CREATE PUBLICATION ddb_snap FOR TABLE orders`); err != nil {
		return 0, err
	}
	par := max(2, runtime.NumCPU())
	var cdcdRuns, refRuns []float64
	for i := range e.Size.Reps {
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		for _, cdcdTurn := range order {
			var d time.Duration
			var err error
			if cdcdTurn {
				d, err = timeDynamoDBSnapshot(ctx, e, pg, fmt.Sprintf("ddb_snap_%d", i), par, rows)
				cdcdRuns = append(cdcdRuns, secs(d))
			} else {
				d, err = timeReferenceLoader(ctx, pg, rows, par*ddbWriters)
				refRuns = append(refRuns, secs(d))
			}
			if err != nil {
				return 0, err
			}
		}
		log.Printf("dynamodb snapshot rep %d: cdcd %.2fs, BatchWriteItem loader %.2fs", i+1, cdcdRuns[i], refRuns[i])
	}
	x := res.addRatio("dynamodb.snapshot", fmt.Sprintf("snapshot %s-row orders into dynalite (%d workers × %d calls)", human(rows), par, ddbWriters),
		"rows/s", float64(rows), fmt.Sprintf("BatchWriteItem loader, %d calls", par*ddbWriters), 1.0, cdcdRuns, refRuns)
	return x.Ref, nil
}

// timeDynamoDBSnapshot runs `cdcd run` with an initial snapshot into a fresh
// dynalite until the snapshot state says complete, and checks the item count.
func timeDynamoDBSnapshot(ctx context.Context, e *Env, pg *pgtest.Cluster, slot string, par, rows int) (time.Duration, error) {
	ddb, err := dynalitetest.Start(ctx)
	if err != nil {
		return 0, err
	}
	defer ddb.Close()
	dir := filepath.Join(e.Work, slot)
	y := fmt.Sprintf(`source:
  dsn: %q
  slot: %s
  publication: ddb_snap
  create: true
  heartbeat: "off"
trail:
  dir: %q
snapshot: { mode: initial, parallelism: %d, chunk_rows: %d }
schema: { create: true }
sinks:
  - name: ddb
    kind: dynamodb
    region: us-east-1
    endpoint: %s
    table: "{table}"
log:
  format: json
`, pg.DSN("postgres"), slot, dir, par, max(1000, rows/(4*par)), ddb.Endpoint)
	path := dir + ".yaml"
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		return 0, err
	}
	t0 := time.Now()
	p, err := startCdcd(e, slot, "run", "--config", path)
	if err != nil {
		return 0, err
	}
	defer p.Stop()
	state := filepath.Join(dir, "snapshot-ddb.json")
	for {
		var st struct {
			Complete bool `json:"complete"`
		}
		if b, err := os.ReadFile(state); err == nil && json.Unmarshal(b, &st) == nil && st.Complete {
			break
		}
		if err := p.alive(); err != nil {
			return 0, err
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	d := time.Since(t0)
	if err := p.Stop(); err != nil {
		return 0, err
	}
	// The walsender may outlive cdcd's exit by a moment.
	drop := fmt.Sprintf(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '%s' AND NOT active`, slot)
	for deadline := time.Now().Add(30 * time.Second); ; {
		var left int
		if err := execSQL(ctx, pg, drop); err != nil {
			return 0, err
		}
		if err := pg.QueryRow(fmt.Sprintf(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = '%s'`, slot), &left); err != nil {
			return 0, err
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("slot %s still active 30 s after cdcd stopped", slot)
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
	if err := countItems(ctx, ddb.Client(), "orders", rows); err != nil {
		return 0, err
	}
	return d, os.RemoveAll(dir)
}

// timeReferenceLoader is the straightforward loader a user would write:
// create the table, stream `SELECT *` and write it with BatchWriteItem in
// 25-item chunks, writers calls in flight, UnprocessedItems retried.
func timeReferenceLoader(ctx context.Context, pg *pgtest.Cluster, rows, writers int) (time.Duration, error) {
	ddb, err := dynalitetest.Start(ctx)
	if err != nil {
		return 0, err
	}
	defer ddb.Close()
	c := ddb.Client()
	t0 := time.Now()
	if _, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{TableName: aws.String("orders"), BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("shard_key"), AttributeType: types.ScalarAttributeTypeN}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("shard_key"), KeyType: types.KeyTypeHash}}}); err != nil {
		return 0, err
	}
	if err := dynamodb.NewTableExistsWaiter(c, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, 2*time.Second
	}).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("orders")}, time.Minute); err != nil {
		return 0, err
	}
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	chunks := make(chan []types.WriteRequest, 2*writers)
	for range writers {
		g.Go(func() error {
			for chunk := range chunks {
				pending := map[string][]types.WriteRequest{"orders": chunk}
				for wait := 25 * time.Millisecond; len(pending) > 0; wait = min(2*wait, 5*time.Second) {
					out, err := c.BatchWriteItem(gctx, &dynamodb.BatchWriteItemInput{RequestItems: pending})
					if err != nil {
						return err
					}
					if pending = out.UnprocessedItems; len(pending) > 0 {
						time.Sleep(wait)
					}
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(chunks)
		rs, err := conn.Query(gctx, `SELECT order_id, shard_key, n, description FROM orders`)
		if err != nil {
			return err
		}
		defer rs.Close()
		var chunk []types.WriteRequest
		for rs.Next() {
			var id int64
			var key, n int32
			var desc string
			if err := rs.Scan(&id, &key, &n, &desc); err != nil {
				return err
			}
			chunk = append(chunk, types.WriteRequest{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{
				"order_id":    &types.AttributeValueMemberN{Value: strconv.FormatInt(id, 10)},
				"shard_key":   &types.AttributeValueMemberN{Value: strconv.FormatInt(int64(key), 10)},
				"n":           &types.AttributeValueMemberN{Value: strconv.FormatInt(int64(n), 10)},
				"description": &types.AttributeValueMemberS{Value: desc},
			}}})
			if len(chunk) == 25 {
				select {
				case chunks <- chunk:
				case <-gctx.Done():
					return gctx.Err()
				}
				chunk = nil
			}
		}
		if len(chunk) > 0 {
			select {
			case chunks <- chunk:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return rs.Err()
	})
	if err := g.Wait(); err != nil {
		return 0, fmt.Errorf("reference loader: %w", err)
	}
	d := time.Since(t0)
	return d, countItems(ctx, c, "orders", rows)
}

// countItems checks a table holds want items.
func countItems(ctx context.Context, c *dynamodb.Client, table string, want int) error {
	n := 0
	p := dynamodb.NewScanPaginator(c, &dynamodb.ScanInput{TableName: aws.String(table), Select: types.SelectCount})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		n += int(page.Count)
	}
	if n != want {
		return fmt.Errorf("table %s holds %d items, want %d", table, n, want)
	}
	return nil
}

func benchDynamoDBStream(ctx context.Context, e *Env, res *Results, pg *pgtest.Cluster, loader float64) error {
	if err := execSQL(ctx, pg, captureDDL...); err != nil {
		return err
	}
	reps := e.Size.Reps
	for i := range reps {
		if err := execSQL(ctx, pg,
			fmt.Sprintf(`SELECT pg_create_logical_replication_slot('ddbs_%d', 'pgoutput')`, i),
			fmt.Sprintf(`SELECT pg_create_logical_replication_slot('ddbc_%d', 'pgoutput')`, i)); err != nil {
			return err
		}
	}
	rows := e.Size.DynamoDBStreamRows
	log.Printf("dynamodb stream: %s rows in %d-row transactions", human(rows), e.Size.CaptureTx)
	if err := execSQL(ctx, pg, fmt.Sprintf(`CALL fill(%d, %d)`, rows, e.Size.CaptureTx)); err != nil {
		return err
	}
	end, err := markerLSN(pg)
	if err != nil {
		return err
	}
	var runs, capRuns, runCPU, capCPU []float64
	var peak uint64
	for i := range reps {
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		for _, sinkTurn := range order {
			if sinkTurn {
				d, cpu, rss, err := timeDynamoDBStream(ctx, e, pg, fmt.Sprintf("ddbs_%d", i), end, rows)
				if err != nil {
					return err
				}
				runs, runCPU = append(runs, secs(d)), append(runCPU, secs(cpu))
				peak = max(peak, rss)
			} else {
				d, cpu, err := timeCaptureCPU(ctx, e, pg, fmt.Sprintf("ddbc_%d", i), end.String())
				if err != nil {
					return err
				}
				capRuns, capCPU = append(capRuns, secs(d)), append(capCPU, secs(cpu))
			}
		}
		log.Printf("dynamodb stream rep %d: PG→DynamoDB %.2fs (%.2fs CPU), capture only %.2fs (%.2fs CPU)",
			i+1, runs[i], runCPU[i], capRuns[i], capCPU[i])
	}
	x := res.addRatio("dynamodb.stream", fmt.Sprintf("PG→DynamoDB (dynalite) %s rows (%d-row tx)", human(rows), e.Size.CaptureTx),
		"rows/s", float64(rows), "cdcd capture only", 0.5, runs, capRuns)
	res.Notes = append(res.Notes, fmt.Sprintf("dynamodb stream: %.0f rows/s is %.2f× the BatchWriteItem loader's %.0f rows/s into the same dynalite: "+
		"dynalite (one Node process) is the limit, not cdcd", x.Cdcd, x.Cdcd/loader, loader))
	sinkCPU := (median(runCPU) - median(capCPU)) / float64(rows) * 1000 * 1000 // ms per 1,000 items
	res.Notes = append(res.Notes, fmt.Sprintf("dynamodb stream: cdcd run %.2fs CPU vs capture only %.2fs CPU (medians) for %s rows: "+
		"the sink's own CPU is %.2f ms per 1,000 items; peak RSS of cdcd run %.0f MiB",
		median(runCPU), median(capCPU), human(rows), sinkCPU, float64(peak)/(1<<20)))
	log.Print(res.Notes[len(res.Notes)-1])
	return nil
}

// timeDynamoDBStream runs `cdcd run` into a fresh dynalite until the
// checkpoint item reaches end; it returns the time, the process's CPU time
// and its peak RSS.
func timeDynamoDBStream(ctx context.Context, e *Env, pg *pgtest.Cluster, slot string, end change.LSN, rows int) (time.Duration, time.Duration, uint64, error) {
	ddb, err := dynalitetest.Start(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	defer ddb.Close()
	dir := filepath.Join(e.Work, slot)
	y := fmt.Sprintf(`source:
  dsn: %q
  slot: %s
  publication: cdcd
  heartbeat: "off"
trail:
  dir: %q
schema: { create: true }
sinks:
  - name: ddb
    kind: dynamodb
    region: us-east-1
    endpoint: %s
log:
  format: json
`, pg.DSN("postgres"), slot, dir, ddb.Endpoint)
	path := dir + ".yaml"
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		return 0, 0, 0, err
	}
	t0 := time.Now()
	p, err := startCdcd(e, slot, "run", "--config", path)
	if err != nil {
		return 0, 0, 0, err
	}
	defer p.Stop()
	c := ddb.Client()
	for {
		out, err := c.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("cdcd_checkpoints"),
			Key: map[string]types.AttributeValue{"sink": &types.AttributeValueMemberS{Value: "ddb"}}, ConsistentRead: aws.Bool(true)})
		if err == nil && out.Item != nil {
			if n, ok := out.Item["end_lsn"].(*types.AttributeValueMemberN); ok {
				if l, err := strconv.ParseUint(n.Value, 10, 64); err == nil && change.LSN(l) >= end {
					break
				}
			}
		}
		if err := p.alive(); err != nil {
			return 0, 0, 0, err
		}
		if err := ctx.Err(); err != nil {
			return 0, 0, 0, err
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
	d := time.Since(t0)
	rss := p.PeakRSS()
	if err := p.Stop(); err != nil {
		return 0, 0, 0, err
	}
	if err := countItems(ctx, c, "public_bench", rows); err != nil {
		return 0, 0, 0, err
	}
	return d, cpuTime(p), rss, os.RemoveAll(dir)
}

// timeCaptureCPU is timeCdcdCapture with the process's CPU time.
func timeCaptureCPU(ctx context.Context, e *Env, pg *pgtest.Cluster, slot, until string) (time.Duration, time.Duration, error) {
	dir := filepath.Join(e.Work, slot)
	y := fmt.Sprintf("source:\n  dsn: %q\n  slot: %s\n  publication: cdcd\n  heartbeat: \"off\"\ntrail:\n  dir: %q\nlog:\n  format: json\n",
		pg.DSN("postgres"), slot, dir)
	path := dir + ".yaml"
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	p, err := startCdcd(e, slot, "capture", "--config", path, "--until", until)
	if err != nil {
		return 0, 0, err
	}
	if err := p.Wait(ctx, 30*time.Minute); err != nil {
		return 0, 0, err
	}
	return time.Since(t0), cpuTime(p), os.RemoveAll(dir)
}

// cpuTime is an exited process's user + system CPU time.
func cpuTime(p *Proc) time.Duration {
	if p.cmd.ProcessState == nil {
		return 0
	}
	return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
}
