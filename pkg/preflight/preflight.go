// Package preflight checks, before cdcd runs, everything the migration guides
// leave to manual prerequisites: the source's version, standby settings,
// wal_level, slot and sender headroom, the role's REPLICATION privilege,
// publication and slot state, max_slot_wal_keep_size, tables that cannot
// replicate updates and deletes, TOASTable columns (for a trigger-table
// source instead: the change log and triggers or the right to create them,
// keys, and the change log's size and age), each sink's reachability
// and tables, TLS (sslmode=verify-full) on every PostgreSQL connection, and
// the trail directory. Each check yields one Result: pass,
// warn or fail, with the remedy when it is not a pass.
//
// Checks only read: nothing is created on any server, and the trail
// directory gets one probe file, removed at once.
package preflight

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/dsn"
	"github.com/cdcd-io/cdcd/pkg/sink/dynamodb"
	"github.com/cdcd-io/cdcd/pkg/sink/oracle"
	pgsink "github.com/cdcd-io/cdcd/pkg/sink/postgres"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
)

// Status is a check's outcome.
type Status string

// The outcomes. Only Fail makes `cdcd check` exit non-zero.
const (
	Pass Status = "pass"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Result is the outcome of one check.
type Result struct {
	// Check names what was checked, e.g. "source.wal_level".
	Check  string `json:"check"`
	Status Status `json:"status"`
	// Detail says what was found.
	Detail string `json:"detail"`
	// Remedy says how to fix a warn or fail.
	Remedy string `json:"remedy,omitempty"`
}

// Config is what to check. The zero value of every optional field means its
// default.
type Config struct {
	// Source is the source's configuration (defaults applied here).
	Source postgres.Config
	// Trigger, when set, says the source is a trigger-table source
	// (source.kind: trigger): its checks replace the pgoutput ones (no
	// wal_level, REPLICATION, slot or publication) and Source is not used.
	// Default nil: a pgoutput source.
	Trigger *Trigger
	// TrailDir is the trail directory.
	TrailDir string
	// AckApplied reports capture.ack: applied (its trade-off is shown).
	// Default false: durable.
	AckApplied bool
	// Sinks are the configured sinks.
	Sinks []Sink
	// MinFreeBytes: less free space for the trail fails. Default 100 MiB.
	MinFreeBytes int64
	// WarnFreeBytes: less free space warns. Default 2 GiB.
	WarnFreeBytes int64
	// Timeout bounds each connection attempt. Default 10s.
	Timeout time.Duration
}

// Sink is one sink to check.
type Sink struct {
	Name, Kind string
	// DSN is a postgres sink's connection string.
	DSN string
	// CheckpointTable is a postgres sink's checkpoint table. Default
	// cdcd.checkpoint.
	CheckpointTable string
	// Brokers are a kafka sink's seed brokers.
	Brokers []string
	// Oracle is an oracle sink's configuration; nil for other kinds.
	Oracle *oracle.Config
	// DynamoDB is a dynamodb sink's configuration.
	DynamoDB *dynamodb.Config
	// IAM reports that a postgres sink authenticates with AWS IAM tokens:
	// its DSN must then say sslmode=verify-full, and the connection is not
	// tried (that would need AWS credentials).
	IAM bool
	// Postgres is a postgres sink's configuration: its Flavor selects the
	// aurora-dsql and citus checks (flavor.go), which use the rest.
	// Default: the zero Config, plain PostgreSQL.
	Postgres pgsink.Config
}

// checker accumulates results.
type checker struct {
	cfg Config
	out []Result
}

func (c *checker) add(check string, st Status, detail, remedy string) {
	c.out = append(c.out, Result{Check: check, Status: st, Detail: detail, Remedy: remedy})
}

// Run runs every check and returns the results in a stable order.
func Run(ctx context.Context, cfg Config) []Result {
	cfg.Source = cfg.Source.Defaults()
	if cfg.MinFreeBytes <= 0 {
		cfg.MinFreeBytes = 100 << 20
	}
	if cfg.WarnFreeBytes <= 0 {
		cfg.WarnFreeBytes = 2 << 30
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	c := &checker{cfg: cfg}
	var tables []table
	if cfg.Trigger != nil {
		c.out = append(c.out, tlsCheck("source.tls", "source", cfg.Trigger.DSN, false))
		tables = c.triggerSource(ctx)
	} else {
		c.tls()
		tables = c.source(ctx)
	}
	for _, s := range cfg.Sinks {
		c.sink(ctx, s, tables)
	}
	c.trail()
	return c.out
}

// Failed reports whether any result is a Fail.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

// WriteText writes one line per result: status, check, detail, remedy.
func WriteText(w io.Writer, rs []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rs {
		line := r.Detail
		if r.Remedy != "" {
			line += " — fix: " + r.Remedy
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.ToUpper(string(r.Status)), r.Check, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var p, wn, f int
	for _, r := range rs {
		switch r.Status {
		case Pass:
			p++
		case Warn:
			wn++
		case Fail:
			f++
		}
	}
	_, err := fmt.Fprintf(w, "%d passed, %d warnings, %d failed\n", p, wn, f)
	return err
}

// WriteJSON writes the results as a JSON document for machines.
func WriteJSON(w io.Writer, rs []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		OK      bool     `json:"ok"`
		Results []Result `json:"results"`
	}{!Failed(rs), rs})
}

// connect opens a regular connection; its error names the server, never
// the password.
func connect(ctx context.Context, d, app string, timeout time.Duration) (*pgx.Conn, string, error) {
	cfg, err := pgx.ParseConfig(d)
	if err != nil {
		return nil, "", dsn.RedactError(err, dsn.Password(d))
	}
	desc := fmt.Sprintf("%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
	cfg.RuntimeParams["application_name"] = app
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, desc, dsn.RedactError(err, cfg.Password)
	}
	return conn, desc, nil
}

// table is a published source table.
type table struct {
	schema, name string
}

func (t table) String() string { return t.schema + "." + t.name }

func list(ts []string, max int) string {
	if len(ts) <= max {
		return strings.Join(ts, ", ")
	}
	return strings.Join(ts[:max], ", ") + fmt.Sprintf(" and %d more", len(ts)-max)
}
