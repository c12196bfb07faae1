package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/cdcd-io/cdcd/pkg/config"
	"github.com/cdcd-io/cdcd/pkg/dsn"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

func newTriggerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trigger",
		Short: "Install or remove the trigger source's change log and triggers (source.kind: trigger)",
	}
	cmd.AddCommand(newTriggerInstallCmd(), newTriggerUninstallCmd())
	return cmd
}

func newTriggerInstallCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use: "install --config FILE",
		Short: "Create schema cdcd, the change log and the capture triggers on every included table (idempotent; " +
			"waits for transactions writing those tables to end)",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tc, conn, err := triggerConnect(cmd.Context(), path)
			if err != nil {
				return err
			}
			defer conn.Close(context.WithoutCancel(cmd.Context()))
			tables, err := trigger.Tables(cmd.Context(), conn, tc.Include)
			if err != nil {
				return fmt.Errorf("trigger install: %w", err)
			}
			if len(tables) == 0 {
				return errors.New("trigger install: no table is included: check tables.include and tables.exclude (schema.table patterns) against the source's tables")
			}
			// A key-less table's error gets its remedy in main (withRemedy).
			if err := trigger.Install(cmd.Context(), conn, tables, trigger.Options{AllowKeyless: tc.AllowKeyless}); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, t := range tables {
				fmt.Fprintf(out, "captured %s.%s\n", t.Schema, t.Name)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func newTriggerUninstallCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use: "uninstall --config FILE",
		Short: "Drop every cdcd trigger, the change log (with any changes not yet captured into the trail) " +
			"and schema cdcd",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, conn, err := triggerConnect(cmd.Context(), path)
			if err != nil {
				return err
			}
			defer conn.Close(context.WithoutCancel(cmd.Context()))
			if err := trigger.Uninstall(cmd.Context(), conn); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "removed the cdcd triggers, their functions, cdcd.change_log and schema cdcd")
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// triggerConnect loads the configuration, which must be of kind trigger,
// and connects to its source. Errors never hold the password.
func triggerConnect(ctx context.Context, path string) (trigger.Config, *pgx.Conn, error) {
	f, err := config.Load(path)
	if err != nil {
		return trigger.Config{}, nil, err
	}
	if f.Source.Kind != config.KindTrigger {
		return trigger.Config{}, nil, &config.Error{File: path, Path: "source.kind",
			Err: errors.New("cdcd trigger works with source.kind: trigger; the pgoutput source needs no triggers")}
	}
	tc := f.TriggerConfig(nil)
	cfg, err := pgx.ParseConfig(tc.DSN)
	if err != nil {
		return tc, nil, fmt.Errorf("source.dsn: %w", dsn.RedactError(err, dsn.Password(tc.DSN)))
	}
	cfg.RuntimeParams["application_name"] = "cdcd trigger"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return tc, nil, fmt.Errorf("connect to the source %s@%s:%d/%s: %w", cfg.User, cfg.Host, cfg.Port, cfg.Database,
			dsn.RedactError(err, cfg.Password))
	}
	return tc, conn, nil
}
