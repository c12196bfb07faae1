// Package demo runs cdcd end to end on throwaway servers — what `make demo`
// shows a new user, and the standby → target end-to-end test.
//
// It starts three PostgreSQL 17 servers: A, a primary; B, a physical
// standby of A; C, the target. cdcd runs in-process with logical decoding
// on B (PostgreSQL 16+ decodes on a standby), writes the trail and applies
// it to C with the PostgreSQL sink, while a write workload runs on A. Then
// cdcd drains and stops, and C is compared with A table by table.
//
// The tables are created empty on A and C before cdcd starts, and the
// workload starts only once cdcd is streaming: cdcd carries the changes
// made after its slot exists (there is no initial snapshot yet).
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/internal/dynalitetest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/config"
	"github.com/cdcd-io/cdcd/pkg/pipeline"
)

// Options configures a demo run. The zero value of every field means its
// default.
type Options struct {
	// Duration is how long the write workload runs on A. Default 20s.
	Duration time.Duration
	// Writers is the number of concurrent writing sessions on A. Default 4.
	Writers int
	// Rate caps the commits per second of all writers together, so that a
	// small machine still drains quickly. Default 500; negative: no cap.
	Rate int
	// Keep leaves the servers and cdcd running after the check, prints the
	// connection strings and waits until ctx ends. Default false.
	Keep bool
	// Live shows a live status line for a terminal. Default false: a plain
	// line every 2 s.
	Live bool
	// Width is the terminal's width in columns, which the live line is cut
	// to. Default 0: not cut.
	Width int
	// Sink is the target: SinkPostgres (server C) or SinkDynamoDB (a
	// dynalite server, DynamoDB's API). Default SinkPostgres.
	Sink string
}

// Targets (Options.Sink).
const (
	SinkPostgres = "postgres"
	SinkDynamoDB = "dynamodb"
)

func (o Options) defaults() Options {
	if o.Duration <= 0 {
		o.Duration = 20 * time.Second
	}
	if o.Writers <= 0 {
		o.Writers = 4
	}
	if o.Rate == 0 {
		o.Rate = 500
	}
	if o.Sink == "" {
		o.Sink = SinkPostgres
	}
	return o
}

// ErrMismatch is returned by Run when C differs from A after cdcd applied
// everything.
var ErrMismatch = errors.New("target C differs from primary A")

const (
	// startTimeout bounds starting the servers and cdcd reaching streaming.
	startTimeout = 2 * time.Minute
	// catchUpTimeout bounds the wait for C to apply the final marker.
	catchUpTimeout = 2 * time.Minute
	// markerPrefix is the logical message that closes the workload.
	markerPrefix = "demo.done"
)

// Run runs the demo, writing its report to out. It returns ErrMismatch when
// C differs from A, ctx's error when interrupted, and any other failure as
// is. Every server it started is stopped and removed before it returns.
func Run(ctx context.Context, opts Options, out io.Writer) (err error) {
	opts = opts.defaults()
	began := time.Now()
	ddb := opts.Sink == SinkDynamoDB
	if !ddb && opts.Sink != SinkPostgres {
		return fmt.Errorf("sink %q: use postgres or dynamodb", opts.Sink)
	}

	dir, err := os.MkdirTemp("", "cdcd-demo-")
	if err != nil {
		return fmt.Errorf("create the demo directory: %w", err)
	}
	logPath := filepath.Join(dir, "cdcd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create the log file: %w", err)
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))

	if ddb {
		fmt.Fprintln(out, "cdcd demo: logical decoding on a PostgreSQL 17 standby, applied to DynamoDB (dynalite)")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "· starting PostgreSQL 17: A (primary), B (physical standby of A); dynalite (DynamoDB's API) as the target")
	} else {
		fmt.Fprintln(out, "cdcd demo: logical decoding on a PostgreSQL 17 standby, applied to another server")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "· starting PostgreSQL 17: A (primary), B (physical standby of A), C (target)")
	}
	startCtx, cancelStart := context.WithTimeout(ctx, startTimeout)
	defer cancelStart()
	t0 := time.Now()
	srv, err := startServers(startCtx, !ddb)
	if err != nil {
		return fmt.Errorf("start servers: %w", interrupted(ctx, err))
	}
	if ddb {
		if srv.ddb, err = dynalitetest.Start(startCtx); err != nil {
			return errors.Join(fmt.Errorf("start dynalite: %w", interrupted(ctx, err)), srv.stop())
		}
		// dynalite takes any credentials; the AWS default chain reads these.
		for _, kv := range dynalitetest.Env() {
			k, v, _ := strings.Cut(kv, "=")
			os.Setenv(k, v)
		}
	}
	defer func() {
		if serr := srv.stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("stop servers: %w", serr))
			return
		}
		fmt.Fprintln(out, "· servers stopped and removed")
	}()
	fmt.Fprintf(out, "  started in %.1fs\n\n", time.Since(t0).Seconds())
	if ddb {
		fmt.Fprintf(out, "    A (primary :%d) ──physical──▶ B (standby :%d) ──pgoutput──▶ cdcd ──▶ DynamoDB (dynalite %s)\n\n",
			srv.a.Port, srv.b.Port, srv.ddb.Endpoint)
	} else {
		fmt.Fprintf(out, "    A (primary :%d) ──physical──▶ B (standby :%d) ──pgoutput──▶ cdcd ──▶ C (target :%d)\n\n",
			srv.a.Port, srv.b.Port, srv.c.Port)
	}

	if err := srv.createSchema(startCtx); err != nil {
		return interrupted(ctx, err)
	}
	if ddb {
		fmt.Fprintln(out, "· created app.orders and public.employee (empty) on A and publication cdcd on A;\n"+
			"  cdcd creates the DynamoDB tables app_orders and public_employee (schema.create: true)")
	} else {
		fmt.Fprintln(out, "· created app.orders and public.employee (empty) on A and C, and publication cdcd on A")
	}

	cfgPath := filepath.Join(dir, "cdcd.yaml")
	trailDir := filepath.Join(dir, "trail")
	var cfgText string
	if ddb {
		cfgText = configDynamoDBYAML(srv, trailDir)
	} else {
		cfgText = configYAML(srv, trailDir)
	}
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		return fmt.Errorf("write the cdcd config: %w", err)
	}
	f, err := config.Parse([]byte(cfgText))
	if err != nil {
		return fmt.Errorf("parse the cdcd config: %w", err)
	}
	fmt.Fprintf(out, "· cdcd config %s\n  cdcd log    %s\n", cfgPath, logPath)

	rp, err := startPipeline(ctx, f.PipelineConfig(log))
	if err != nil {
		return err
	}
	defer func() {
		if perr := rp.stop(); perr != nil && err == nil {
			err = fmt.Errorf("cdcd: %w (log: %s)", perr, logPath)
		}
	}()
	t0 = time.Now()
	if err := rp.waitStreaming(startCtx); err != nil {
		return fmt.Errorf("%w (log: %s)", interrupted(ctx, err), logPath)
	}
	fmt.Fprintf(out, "· cdcd created slot cdcd on B and is streaming (%.1fs)\n\n", time.Since(t0).Seconds())

	if err := runWorkload(ctx, srv, rp, opts, out); err != nil {
		return fmt.Errorf("%w (log: %s)", interrupted(ctx, err), logPath)
	}

	t0 = time.Now()
	if err := rp.stop(); err != nil {
		return fmt.Errorf("cdcd: %w (log: %s)", err, logPath)
	}
	fmt.Fprintf(out, "· cdcd stopped cleanly: in-flight batches drained, positions recorded (%.1fs)\n\n", time.Since(t0).Seconds())

	target := "C"
	var checks []tableCheck
	if ddb {
		target = "DynamoDB"
		checks, err = compareDynamoDB(ctx, srv.a.DSN(db), srv.ddb)
	} else {
		checks, err = compare(ctx, srv.a.DSN(db), srv.c.DSN(db))
	}
	if err != nil {
		return interrupted(ctx, err)
	}
	if ddb {
		fmt.Fprintln(out, "· DynamoDB compared with A: a full scan of each table, every item's attributes read back as")
		fmt.Fprintln(out, "  the column's type, hashed row by row in key order:")
	} else {
		fmt.Fprintln(out, "· C compared with A, row by row in key order:")
	}
	fmt.Fprintln(out)
	printChecks(out, checks, target)
	fmt.Fprintln(out)
	for _, c := range checks {
		if !c.ok() {
			fmt.Fprintf(out, "✗ %s differs from A (%.0fs in all); cdcd log: %s\n", target, time.Since(began).Seconds(), logPath)
			return ErrMismatch
		}
	}
	fmt.Fprintf(out, "✓ %s matches A (%.0fs in all)\n", target, time.Since(began).Seconds())
	if opts.Keep {
		return keep(ctx, srv, f, log, out)
	}
	return os.RemoveAll(trailDir)
}

// interrupted returns ctx's error in place of err once ctx has ended, so an
// interruption reads as one rather than as whatever it broke.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// configYAML is the cdcd configuration of the demo: decode on B, ask A for
// standby snapshots and heartbeats, apply to C.
func configYAML(srv *servers, trailDir string) string {
	return fmt.Sprintf(`# cdcd configuration written by the demo
source:
  dsn: %s            # B, the standby: logical decoding happens here
  primary_dsn: %s    # A: standby snapshots for slot creation, heartbeats
  slot: cdcd
  publication: cdcd
  create: true
trail:
  dir: %s
sinks:
  - name: C
    kind: postgres
    dsn: %s
log:
  level: info
`, strconv.Quote(srv.b.DSN(db)), strconv.Quote(srv.a.DSN(db)), strconv.Quote(trailDir), strconv.Quote(srv.c.DSN(db)))
}

// configDynamoDBYAML is the demo's configuration with the DynamoDB sink
// on dynalite.
func configDynamoDBYAML(srv *servers, trailDir string) string {
	return fmt.Sprintf(`# cdcd configuration written by the demo
source:
  dsn: %s            # B, the standby: logical decoding happens here
  primary_dsn: %s    # A: standby snapshots for slot creation, heartbeats
  slot: cdcd
  publication: cdcd
  create: true
trail:
  dir: %s
sinks:
  - name: ddb
    kind: dynamodb
    region: us-east-1
    endpoint: %s     # dynalite; credentials from the AWS default chain
    table: "{schema}_{table}"
schema:
  create: true       # create the DynamoDB tables, keyed by the primary keys
log:
  level: info
`, strconv.Quote(srv.b.DSN(db)), strconv.Quote(srv.a.DSN(db)), strconv.Quote(trailDir), srv.ddb.Endpoint)
}

// runWorkload writes on A for opts.Duration with the status shown, then
// commits a final marker on A and waits until C has applied it.
func runWorkload(ctx context.Context, srv *servers, rp *runningPipeline, opts Options, out io.Writer) error {
	fmt.Fprintf(out, "· writing on A for %s: %d sessions of small transactions — orders inserted, updated, deleted;\n"+
		"  employees hired and given raises; one order with a %d KB TOASTed description updated around it\n",
		opts.Duration, opts.Writers, bigDescriptionBytes>>10)
	// The monitor's own connection to A, for pg_current_wal_lsn().
	aConn, err := pgx.Connect(ctx, srv.a.DSN(db))
	if err != nil {
		return fmt.Errorf("connect to A: %w", err)
	}
	defer aConn.Close(context.WithoutCancel(ctx))

	w := newWorkload(srv.a.DSN(db), opts.Writers, opts.Rate, opts.Duration)
	target := "C"
	if opts.Sink == SinkDynamoDB {
		target = "DynamoDB"
	}
	m := &monitor{out: out, live: opts.Live, width: opts.Width, start: time.Now(), a: aConn, p: rp.Pipeline, w: w, target: target}
	mctx, stopMonitor := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { m.run(mctx) })
	defer func() { stopMonitor(); wg.Wait() }()

	wctx, stopWriting := context.WithTimeout(ctx, opts.Duration)
	err = w.run(wctx)
	stopWriting()
	if err != nil {
		return fmt.Errorf("workload: %w", err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// Everything committed before the marker precedes it in the WAL, so C
	// holds all of it once the marker's transaction is applied.
	marker, err := commitMarker(ctx, srv.a.DSN(db))
	if err != nil {
		return err
	}
	stopped := time.Now()
	if err := rp.waitApplied(ctx, marker); err != nil {
		return err
	}
	m.setCaughtUp()
	stopMonitor()
	wg.Wait()
	fmt.Fprintf(out, "· workload stopped after %s transactions; %s caught up with A's final marker (%s) %.1fs later\n",
		thousands(w.Commits()), target, marker, time.Since(stopped).Seconds())
	return nil
}

// commitMarker commits a logical message on A and returns its LSN. Its own
// connection: the monitor's is busy sampling.
func commitMarker(ctx context.Context, dsn string) (change.LSN, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, fmt.Errorf("connect to A: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var text string
	if err := conn.QueryRow(ctx, "SELECT pg_logical_emit_message(true, $1, 'x')::text", markerPrefix).Scan(&text); err != nil {
		return 0, fmt.Errorf("commit the final marker on A: %w", err)
	}
	return change.ParseLSN(text)
}

// keep leaves the servers up with cdcd running again (resuming from its
// trail and C's recorded position) until ctx ends.
func keep(ctx context.Context, srv *servers, f *config.File, log *slog.Logger, out io.Writer) error {
	rp, err := startPipeline(ctx, f.PipelineConfig(log))
	if err != nil {
		return err
	}
	if srv.c == nil {
		fmt.Fprintf(out, "\ncdcd is running again and the servers stay up until Ctrl-C:\n"+
			"  A  psql %q   # write here\n  B  psql %q\n"+
			"  DynamoDB (dynalite): AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s aws dynamodb scan --endpoint-url %s --region %s --table-name app_orders\n",
			srv.a.DSN(db), srv.b.DSN(db), dynalitetest.AccessKey, dynalitetest.SecretKey, srv.ddb.Endpoint, dynalitetest.Region)
	} else {
		fmt.Fprintf(out, "\ncdcd is running again and the servers stay up until Ctrl-C:\n"+
			"  A  psql %q   # write here\n  B  psql %q\n  C  psql %q   # see it here\n",
			srv.a.DSN(db), srv.b.DSN(db), srv.c.DSN(db))
	}
	select {
	case <-ctx.Done():
	case <-rp.done:
	}
	if err := rp.stop(); err != nil {
		return fmt.Errorf("cdcd: %w", err)
	}
	return nil
}

// runningPipeline is a pipeline running in its own goroutine.
type runningPipeline struct {
	*pipeline.Pipeline
	cancel    context.CancelFunc
	done      chan struct{} // closed when Run returned
	err       error         // Run's result, once done
	streaming chan struct{} // closed when capture first started streaming
	stopOnce  sync.Once
}

func startPipeline(ctx context.Context, cfg pipeline.Config) (*runningPipeline, error) {
	p, err := pipeline.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("build the cdcd pipeline: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	rp := &runningPipeline{Pipeline: p, cancel: cancel, done: make(chan struct{}), streaming: make(chan struct{})}
	var once sync.Once
	p.Capture().OnConnected = func() { once.Do(func() { close(rp.streaming) }) }
	go func() {
		defer close(rp.done)
		rp.err = p.Run(ctx)
		if rp.err == nil && ctx.Err() == nil {
			rp.err = errors.New("cdcd stopped by itself")
		}
	}()
	return rp, nil
}

// stop cancels the pipeline and waits for its clean drain. It may be called
// more than once; only the first call returns the pipeline's error.
func (rp *runningPipeline) stop() error {
	err := error(nil)
	rp.stopOnce.Do(func() {
		rp.cancel()
		<-rp.done
		err = rp.err
	})
	return err
}

// failed is the pipeline's error when it has stopped by itself, else nil.
func (rp *runningPipeline) failed() error {
	select {
	case <-rp.done:
		return fmt.Errorf("cdcd stopped: %w", rp.err)
	default:
		return nil
	}
}

// waitStreaming waits until capture has created its slot on B and started
// streaming: every change committed on A from now on reaches the trail.
func (rp *runningPipeline) waitStreaming(ctx context.Context) error {
	select {
	case <-rp.streaming:
		return nil
	case <-rp.done:
		return rp.failed()
	case <-ctx.Done():
		return fmt.Errorf("waiting for cdcd to stream from B: %w", ctx.Err())
	}
}

// waitApplied waits until capture has the transaction that ends after
// marker durably in the trail and every sink has applied it.
func (rp *runningPipeline) waitApplied(ctx context.Context, marker change.LSN) error {
	ctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		applied := rp.Capture().Stats().Durable > marker
		var lastErr string
		for _, w := range rp.Workers() {
			st := w.Stats()
			applied = applied && st.Position.EndLSN > marker
			if st.LastError != "" {
				lastErr = st.LastError
			}
		}
		if applied {
			return nil
		}
		select {
		case <-rp.done:
			return rp.failed()
		case <-ctx.Done():
			err := fmt.Errorf("waiting for C to apply everything up to %s: %w", marker, ctx.Err())
			if lastErr != "" {
				err = fmt.Errorf("%w (last sink error: %s)", err, lastErr)
			}
			return err
		case <-t.C:
		}
	}
}
