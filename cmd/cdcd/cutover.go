package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/cdcd-io/cdcd/pkg/config"
	"github.com/cdcd-io/cdcd/pkg/cutover"
	"github.com/cdcd-io/cdcd/pkg/dsn"
	"github.com/cdcd-io/cdcd/pkg/service"
	"github.com/cdcd-io/cdcd/pkg/verify"
)

func newCutoverCmd() *cobra.Command {
	var (
		path, verifyMode             string
		dryRun, back, asJSON, rbOnly bool
		forwardStop                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "cutover --config FILE",
		Short: "Switch the application from the source (blue) to the postgres sink (green): fence, drain, sequences, verify, hook; optional rollback replication",
		Long: `cutover runs, each step timed: pre-checks (lag, long transactions, DDL, sequences), fence the
source (read-only database default, older sessions ended), a marker through the stream that every
sink must apply (zero lag by position), sequences set on green, verification (--verify
full|counts|after|off), and the switch hook (cutover.hook). A failure before the switch unfences
the source: blue stays in service. With cutover.rollback: true it then replicates green → blue
in the foreground (stop the blue → green cdcd first), so 'cdcd cutover --back' can return.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := config.Load(path)
			if err != nil {
				return err
			}
			log, err := newLogger(f.Log.Level, f.Log.Format)
			if err != nil {
				return err
			}
			if rbOnly {
				return runRollback(cmd.Context(), f, log, 0)
			}
			cfg, err := f.CutoverConfig(back)
			if err != nil {
				return err
			}
			if verifyMode != "" {
				cfg.Verify = verifyMode
			}
			cfg.DryRun, cfg.Logger = dryRun, log
			cfg.VerifyConfig.Logger = log
			if d := f.DaemonURL(); dryRun && d != "" && verify.Probe(cmd.Context(), d) {
				cfg.VerifyConfig.Daemon = d // exact under writes
			}
			rep, err := cutover.Run(cmd.Context(), cfg)
			out := cmd.OutOrStdout()
			if asJSON {
				if jerr := rep.WriteJSON(out); jerr != nil {
					return jerr
				}
			} else {
				rep.WriteText(out)
			}
			if dryRun || back || !f.Cutover.Rollback || !rep.Switched {
				return err
			}
			// Switched: the way back is needed most when the verification
			// after the switch raised an alert (err), so it runs then too.
			fmt.Fprintln(out, "rollback: replicating green → blue; stop the blue → green cdcd now (e.g. systemctl stop cdcd). SIGINT/SIGTERM stops; 'cdcd cutover --rollback-only' resumes")
			if rerr := runRollback(cmd.Context(), f, log, forwardStop); rerr != nil {
				return rerr
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	cmd.Flags().StringVar(&verifyMode, "verify", "", "full, counts, after or off (default: cutover.verify, else counts)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "pre-checks and verification only: nothing is fenced or switched")
	cmd.Flags().BoolVar(&back, "back", false, "switch back from green to blue over the rollback replication (cutover.back_hook)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().BoolVar(&rbOnly, "rollback-only", false, "run only the rollback replication green → blue (after a restart)")
	cmd.Flags().DurationVar(&forwardStop, "forward-stop-timeout", 10*time.Minute, "how long to wait for the blue → green cdcd to stop before the rollback replication starts")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// runRollback runs the pipeline green → blue until ctx ends. It first waits
// for the blue → green pipeline to stop (its slot on blue inactive): both
// at once would send every change back and forth.
func runRollback(ctx context.Context, f *config.File, log *slog.Logger, wait time.Duration) error {
	rf, err := f.RollbackFile()
	if err != nil {
		return err
	}
	blue := f.Source.DSN
	if f.Source.PrimaryDSN != "" {
		blue = f.Source.PrimaryDSN
	}
	slot := f.Source.Slot
	if slot == "" {
		slot = "cdcd"
	}
	deadline := time.Now().Add(wait)
	logged := false
	for {
		active, err := slotActive(ctx, blue, slot)
		if err != nil {
			return err
		}
		if !active {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the blue → green cdcd still streams from slot %s on blue: stop it (systemctl stop cdcd), then run cdcd cutover --rollback-only", slot)
		}
		if !logged {
			log.Info("waiting for the blue → green cdcd to stop before replicating back", "slot", slot)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	svc, err := service.New(rf.PipelineConfig(log), rf.ServiceConfig(log))
	if err != nil {
		return fmt.Errorf("rollback replication: %w", err)
	}
	return svc.Run(ctx)
}

func slotActive(ctx context.Context, conn, slot string) (bool, error) {
	c, err := pgx.Connect(ctx, conn)
	if err != nil {
		return false, fmt.Errorf("connect to blue (%s): %w", dsn.Redact(conn), dsn.RedactError(err, dsn.Password(conn)))
	}
	defer c.Close(context.WithoutCancel(ctx))
	var active bool
	err = c.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return active, err
}
