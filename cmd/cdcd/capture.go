package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cdcd-io/cdcd/pkg/capture"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/config"
	"github.com/cdcd-io/cdcd/pkg/snapshot"
)

func newCaptureCmd() *cobra.Command {
	var path, until string
	cmd := &cobra.Command{
		Use:   "capture --config FILE",
		Short: "Capture the source's changes into the trail until stopped (SIGINT/SIGTERM)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := config.Load(path)
			if err != nil {
				return err
			}
			log, err := newLogger(f.Log.Level, f.Log.Format)
			if err != nil {
				return err
			}
			cfg := f.CaptureConfig(log)
			var sinks []string
			for _, s := range f.Sinks {
				sinks = append(sinks, s.Name)
			}
			if cfg.Source.ForwardStreamed && snapshot.Skips(cfg.TrailDir, sinks...) {
				// A sink drops changes by commit position (see pipeline.New).
				cfg.Source.ForwardStreamed = false
			}
			c, err := capture.New(cfg)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if until != "" {
				stop, err := change.ParseLSN(until)
				if err != nil {
					return fmt.Errorf("--until %q: %w (expected an LSN such as 0/16B3748)", until, err)
				}
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
				c.OnDurable = func(d change.LSN) {
					if d >= stop {
						cancel()
					}
				}
			}
			if err := c.Run(ctx); err != nil {
				return err
			}
			st := c.Stats()
			log.Info("capture stopped", "durable", st.Durable.String(), "acked", st.Acked.String(),
				"transactions", st.Transactions, "changes", st.Changes)
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	cmd.Flags().StringVar(&until, "until", "", "stop once every transaction up to this LSN is durable in the trail (e.g. a cut-over point)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
