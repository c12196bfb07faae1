package cutover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/dsn"
	"github.com/cdcd-io/cdcd/pkg/verify"
)

// MarkerPrefix is the prefix of the logical message the drain waits for.
const MarkerPrefix = "cdcd.cutover"

// Verify modes.
const (
	VerifyFull   = "full"
	VerifyCounts = "counts"
	VerifyAfter  = "after"
	VerifyOff    = "off"
)

// Config configures a cutover. The zero value of every field means its
// default.
type Config struct {
	// SourceDSN is the blue primary, as a role that may ALTER DATABASE and
	// end other sessions (a superuser, or the database owner with
	// pg_signal_backend). Required.
	SourceDSN string
	// Targets are the green databases: the postgres sinks that take the
	// writes. Required: at least one.
	Targets []Target
	// Verify is the verification before (or after) the switch: full,
	// counts, after or off. Default counts.
	Verify string
	// VerifyConfig carries the mapping, tables and tuning for the
	// verification; its SourceDSN and Targets are filled in.
	VerifyConfig verify.Config
	// MaxLagBytes: the pre-check fails while a sink is further behind the
	// source's WAL than this. Default 64 MiB.
	MaxLagBytes int64
	// MaxTransactionAge: the pre-check fails while a transaction on the
	// source is older than this. Default 30s.
	MaxTransactionAge time.Duration
	// FenceGrace lets transactions in progress in the sessions older than
	// the fence finish (up to this long) before those sessions are ended.
	// Default 0: they are ended at once (their transactions roll back).
	FenceGrace time.Duration
	// FenceCommand replaces the built-in fence (sh -c); UnfenceCommand
	// undoes it. Default: ALTER DATABASE … SET default_transaction_read_only
	// and ending the other sessions.
	FenceCommand, UnfenceCommand string
	// DrainTimeout bounds the wait for every sink to apply the marker.
	// Default 60s.
	DrainTimeout time.Duration
	// SequenceGap is added (in increments) to each source sequence's value
	// on the target. Default 1000.
	SequenceGap int64
	// Hook is the switch command (sh -c), e.g. a load-balancer backend
	// flip. Required unless DryRun.
	Hook string
	// HookTimeout bounds the hook. Default 60s.
	HookTimeout time.Duration
	// RollbackSlot, when set, creates a publication and a logical slot of
	// that name on each target before the switch, so a pipeline green →
	// blue started from it misses nothing. Default "": no rollback.
	RollbackSlot string
	// UnfenceTargets resets default_transaction_read_only on each
	// target's database once the hook succeeded: the way back (cutover
	// --back) makes the fenced blue writable again. Default false.
	UnfenceTargets bool
	// DryRun runs the pre-checks and the verification only — held at an
	// exact position through VerifyConfig.Daemon when it is set (the
	// source keeps taking writes): nothing is fenced or switched.
	DryRun bool
	// Logger receives a line per step. Default: discard.
	Logger *slog.Logger
}

// Target is one green database.
type Target struct {
	// Name is the sink's name. Required.
	Name string
	// DSN is its connection string. Required.
	DSN string
	// CheckpointTable is the sink's checkpoint table. Default
	// cdcd.checkpoint.
	CheckpointTable string
}

func (c Config) defaults() Config {
	if c.Verify == "" {
		c.Verify = VerifyCounts
	}
	if c.MaxLagBytes <= 0 {
		c.MaxLagBytes = 64 << 20
	}
	if c.MaxTransactionAge <= 0 {
		c.MaxTransactionAge = 30 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = time.Minute
	}
	if c.SequenceGap <= 0 {
		c.SequenceGap = 1000
	}
	if c.HookTimeout <= 0 {
		c.HookTimeout = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	for i := range c.Targets {
		if c.Targets[i].CheckpointTable == "" {
			c.Targets[i].CheckpointTable = "cdcd.checkpoint"
		}
	}
	return c
}

// Report is what a cutover did.
type Report struct {
	// Steps are the steps run, in order.
	Steps []Step `json:"steps"`
	// Switched reports that the hook succeeded: green takes the writes.
	Switched bool `json:"switched"`
	// WriteUnavailableSeconds is the time from the fence to the end of the
	// hook (or to the unfence after a failure).
	WriteUnavailableSeconds float64 `json:"write_unavailable_seconds"`
	// MarkerLSN is the drain marker's position.
	MarkerLSN string `json:"marker_lsn,omitempty"`
	// RowsVerified is the number of source rows compared.
	RowsVerified int64 `json:"rows_verified"`
	// Sequences is the number of sequences set on the targets.
	Sequences int `json:"sequences"`
	// Verify is the verification's result (nil when off).
	Verify *verify.Result `json:"verify,omitempty"`
	// Alert is set when the verification after the switch found a
	// difference: the way back is `cdcd cutover --back`.
	Alert string `json:"alert,omitempty"`
	// Error is why the cutover stopped ("" when it completed).
	Error string `json:"error,omitempty"`
}

// Step is one step of the cutover.
type Step struct {
	// Name names the step ("fence", "drain", …).
	Name string `json:"name"`
	// Seconds is how long it took.
	Seconds float64 `json:"seconds"`
	// Detail says what it did.
	Detail string `json:"detail,omitempty"`
	// Error is why it failed ("" when it did not).
	Error string `json:"error,omitempty"`
}

// cutover is one run in progress.
type cutover struct {
	cfg    Config
	log    *slog.Logger
	rep    *Report
	src    *pgx.Conn
	db     string // the source database
	prior  *string
	fenced time.Time
	slots  []Target // targets where this run created the rollback slot
}

// Run performs the cutover (see the package documentation). The report is
// returned with every error; the error says which step failed and whether
// blue is back in service.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.defaults()
	rep := &Report{}
	if cfg.SourceDSN == "" || len(cfg.Targets) == 0 {
		return rep, errors.New("cutover: the source and at least one postgres sink are required")
	}
	switch cfg.Verify {
	case VerifyFull, VerifyCounts, VerifyAfter, VerifyOff:
	default:
		return rep, fmt.Errorf("cutover: verify %q: use full, counts, after or off", cfg.Verify)
	}
	if cfg.Hook == "" && !cfg.DryRun {
		return rep, errors.New("cutover: no switch hook (cutover.hook): the command that points the application at green")
	}
	c := &cutover{cfg: cfg, log: cfg.Logger, rep: rep}
	var err error
	if c.src, err = connect(ctx, cfg.SourceDSN, "source"); err != nil {
		return rep, err
	}
	defer c.src.Close(context.Background())
	err = c.run(ctx)
	if err != nil {
		rep.Error = err.Error()
	}
	return rep, err
}

// step runs f as a named step, timed and logged.
func (c *cutover) step(name string, f func() (string, error)) error {
	start := time.Now()
	detail, err := f()
	s := Step{Name: name, Seconds: time.Since(start).Seconds(), Detail: detail}
	if err != nil {
		s.Error = err.Error()
	}
	c.rep.Steps = append(c.rep.Steps, s)
	if err != nil {
		c.log.Error("cutover step failed", "step", name, "seconds", s.Seconds, "err", err)
		return fmt.Errorf("%s: %w", name, err)
	}
	c.log.Info("cutover step done", "step", name, "seconds", s.Seconds, "detail", detail)
	return nil
}

func (c *cutover) run(ctx context.Context) error {
	if err := c.step("pre-checks", func() (string, error) { return c.preChecks(ctx) }); err != nil {
		return err
	}
	if c.cfg.DryRun {
		return c.step("verify (dry run, "+c.cfg.Verify+")", func() (string, error) {
			return c.verify(ctx, c.cfg.Verify == VerifyCounts, nil)
		})
	}
	c.fenced = time.Now()
	if err := c.step("fence", func() (string, error) { return c.fence(ctx) }); err != nil {
		return c.abort(ctx, err)
	}
	if err := c.step("drain", func() (string, error) { return c.drain(ctx) }); err != nil {
		return c.abort(ctx, err)
	}
	if err := c.step("sequences", func() (string, error) { return c.sequences(ctx) }); err != nil {
		return c.abort(ctx, err)
	}
	var pinned []*pgx.Conn
	defer func() {
		for _, p := range pinned {
			p.Close(context.Background())
		}
	}()
	snaps := make([]string, len(c.cfg.Targets))
	switch c.cfg.Verify {
	case VerifyFull, VerifyCounts:
		if err := c.step("verify ("+c.cfg.Verify+")", func() (string, error) {
			return c.verify(ctx, c.cfg.Verify == VerifyCounts, nil)
		}); err != nil {
			return c.abort(ctx, err)
		}
	case VerifyAfter:
		if err := c.step("pin green (snapshot for the verification after the switch)", func() (string, error) {
			for i, t := range c.cfg.Targets {
				p, err := connect(ctx, t.DSN, "target "+t.Name)
				if err != nil {
					return "", err
				}
				pinned = append(pinned, p)
				if _, err := p.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
					return "", err
				}
				if err := p.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snaps[i]); err != nil {
					return "", fmt.Errorf("target %s: export snapshot: %w", t.Name, err)
				}
			}
			return strings.Join(snaps, ", "), nil
		}); err != nil {
			return c.abort(ctx, err)
		}
	}
	if c.cfg.RollbackSlot != "" {
		if err := c.step("rollback slot on green", func() (string, error) { return c.rollbackSlots(ctx) }); err != nil {
			return c.abort(ctx, err)
		}
	}
	if err := c.step("switch hook", func() (string, error) { return c.hook(ctx) }); err != nil {
		return c.abort(ctx, err)
	}
	c.rep.Switched = true
	if c.cfg.UnfenceTargets {
		if err := c.step("unfence targets", func() (string, error) { return c.unfenceTargets(ctx) }); err != nil {
			return err
		}
	}
	c.rep.WriteUnavailableSeconds = time.Since(c.fenced).Seconds()
	if c.cfg.Verify == VerifyAfter {
		// Blue stays fenced (static); green is read as it was at the switch.
		err := c.step("verify (after the switch)", func() (string, error) { return c.verify(ctx, false, snaps) })
		if err != nil {
			c.rep.Alert = "green differs from blue as of the switch: " + err.Error() +
				" — the way back: cdcd cutover --back (blue is fenced and current as of the switch)"
			return errors.New(c.rep.Alert)
		}
	}
	return nil
}

// abort unfences the source after a failure before the switch.
func (c *cutover) abort(ctx context.Context, cause error) error {
	if c.fenced.IsZero() {
		return cause
	}
	if len(c.slots) > 0 {
		// A slot nobody reads would hold green's WAL for good.
		_ = c.step("drop the rollback slot", func() (string, error) { return c.dropSlots(context.WithoutCancel(ctx)) })
	}
	uerr := c.step("unfence", func() (string, error) { return c.unfence(context.WithoutCancel(ctx)) })
	c.rep.WriteUnavailableSeconds = time.Since(c.fenced).Seconds()
	if uerr != nil {
		return fmt.Errorf("%w; and unfencing the source failed, it is still read-only: %v", cause, uerr)
	}
	return fmt.Errorf("%w; the source is unfenced and stays in service", cause)
}

// hook runs the switch command.
func (c *cutover) hook(ctx context.Context) (string, error) {
	return run(ctx, c.cfg.Hook, c.cfg.HookTimeout)
}

// run runs a shell command; its error carries the exit status and the end
// of its output.
func run(ctx context.Context, command string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	tail := strings.TrimSpace(out.String())
	if len(tail) > 500 {
		tail = "…" + tail[len(tail)-500:]
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after %s", timeout)
		}
		if tail != "" {
			return tail, fmt.Errorf("command %q failed (%v): %s", command, err, tail)
		}
		return tail, fmt.Errorf("command %q failed (%v)", command, err)
	}
	return tail, nil
}

// verify compares source and targets as they are (both static now), or
// with the targets read in the given snapshots.
func (c *cutover) verify(ctx context.Context, counts bool, snaps []string) (string, error) {
	vc := c.cfg.VerifyConfig
	vc.SourceDSN, vc.Counts, vc.Repair = c.cfg.SourceDSN, counts, false
	if !c.cfg.DryRun {
		vc.Daemon = "" // fenced and drained: both sides stand still
	}
	vc.Targets = nil
	for i, t := range c.cfg.Targets {
		vt := verify.Target{Name: t.Name, DSN: t.DSN}
		if snaps != nil {
			vt.Snapshot = snaps[i]
		}
		vc.Targets = append(vc.Targets, vt)
	}
	res, err := verify.Run(ctx, vc)
	c.rep.Verify = res
	if res != nil {
		var tables int
		for _, t := range res.Targets {
			for _, x := range t.Tables {
				c.rep.RowsVerified += x.Rows
				tables++
			}
		}
		if err != nil && errors.Is(err, verify.ErrMismatch) {
			return "", fmt.Errorf("%s", mismatches(res))
		}
		if err == nil {
			return fmt.Sprintf("%d tables, %d rows match", tables, c.rep.RowsVerified), nil
		}
	}
	return "", err
}

// mismatches names the differing tables and their first keys.
func mismatches(r *verify.Result) string {
	var parts []string
	for _, t := range r.Targets {
		for _, x := range t.Tables {
			if x.Match {
				continue
			}
			p := fmt.Sprintf("%s on %s differs", x.Target, t.Sink)
			if x.Error != "" {
				p += " (" + x.Error + ")"
			}
			keys := append(append(append([]string{}, x.Missing...), x.Extra...), x.Changed...)
			if len(keys) > 3 {
				keys = keys[:3]
			}
			if len(keys) > 0 {
				p += ": " + strings.Join(keys, ", ")
			}
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "; ")
}

// connect opens a connection that may write even into a fenced database
// (its own session setting).
func connect(ctx context.Context, conn, what string) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(conn)
	if err != nil {
		return nil, fmt.Errorf("parse the %s's dsn %s: %w", what, dsn.Redact(conn), dsn.RedactError(err, dsn.Password(conn)))
	}
	cc.RuntimeParams["application_name"] = "cdcd-cutover"
	cc.RuntimeParams["default_transaction_read_only"] = "off"
	c, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect to the %s (%s): %w", what, dsn.Redact(conn), dsn.RedactError(err, cc.Password))
	}
	return c, nil
}

func parseLSN(s string) change.LSN {
	l, _ := change.ParseLSN(s)
	return l
}
