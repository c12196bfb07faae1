package main

import (
	"github.com/spf13/cobra"

	"github.com/cdcd-io/cdcd/pkg/capture"
	"github.com/cdcd-io/cdcd/pkg/config"
)

func newCaptureCmd() *cobra.Command {
	var path string
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
			cfg := f.CaptureConfig()
			cfg.Logger = log
			c, err := capture.New(cfg)
			if err != nil {
				return err
			}
			if err := c.Run(cmd.Context()); err != nil {
				return err
			}
			st := c.Stats()
			log.Info("capture stopped", "durable", st.Durable.String(), "acked", st.Acked.String(),
				"transactions", st.Transactions, "changes", st.Changes)
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
