package main

import (
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cdcd-io/cdcd/pkg/config"
	"github.com/cdcd-io/cdcd/pkg/service"
)

func newRunCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Capture and apply to every configured sink until stopped (SIGINT/SIGTERM: drain, record positions, exit 0)",
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
			// The service adds the HTTP endpoint, the WAL guard and systemd
			// notifications around the pipeline.
			pc := f.PipelineConfig(log)
			if term.IsTerminal(int(os.Stderr.Fd())) {
				pc.Snapshot.Progress = os.Stderr // live bars; logs otherwise
			}
			svc, err := service.New(pc, f.ServiceConfig(log))
			if err != nil {
				return err
			}
			if err := svc.Run(cmd.Context()); err != nil {
				return err
			}
			p := svc.Pipeline()
			st := p.Capture().Stats()
			log.Info("cdcd stopped", "durable", st.Durable.String(), "acked", st.Acked.String())
			for _, w := range p.Workers() {
				ws := w.Stats()
				log.Info("sink stopped", "sink", w.Name(), "seq", ws.Position.Seq, "end_lsn", ws.Position.EndLSN.String(),
					"transactions", ws.Transactions, "rows", ws.Rows)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
