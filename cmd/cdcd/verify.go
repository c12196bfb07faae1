package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/cdcd-io/cdcd/pkg/config"
	"github.com/cdcd-io/cdcd/pkg/verify"
)

func newVerifyCmd() *cobra.Command {
	var (
		path, daemon string
		tables       []string
		asJSON       bool
		repair       bool
		static       bool
		maxKeys      int
		parallel     int
		holdTimeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "verify --config FILE",
		Short: "Compare every replicated table between the source and each postgres target (counts + checksums per key range, differing keys named); exit 0 only when all match",
		Long: `verify compares the tables the configuration replicates, through its mapping, between the
source and every postgres sink: row count and checksum per key range, ranges in parallel,
differing ranges bisected to the differing keys.

While cdcd runs (its http endpoint answers), every sink is held at the source snapshot's exact
position just long enough to pin its target, so a busy database verifies without stopping
writes and without false alarms. When cdcd is not running, the targets are compared as they are
with the source as it is now: exact once the source takes no writes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := config.Load(path)
			if err != nil {
				return err
			}
			cfg, err := f.VerifyConfig()
			if err != nil {
				return err
			}
			log, err := newLogger(f.Log.Level, f.Log.Format)
			if err != nil {
				return err
			}
			cfg.Tables, cfg.Repair, cfg.MaxKeys, cfg.Parallel, cfg.HoldTimeout, cfg.Logger = tables, repair, maxKeys, parallel, holdTimeout, log
			if daemon == "" {
				daemon = f.DaemonURL()
			}
			if f.Source.Kind == config.KindTrigger && !static {
				// Holds are placed at WAL positions: a trigger source has none.
				log.Warn("source.kind trigger: comparing the targets as they are (held verification needs a pgoutput source)")
				static = true
			}
			if !static && daemon != "" && verify.Probe(cmd.Context(), daemon) {
				cfg.Daemon = daemon
			} else if !static {
				log.Warn("no running cdcd answers: comparing the targets as they are (exact only while the source takes no writes)", "endpoint", daemon)
			}
			res, err := verify.Run(cmd.Context(), cfg)
			if res != nil {
				out := cmd.OutOrStdout()
				if asJSON {
					if jerr := res.WriteJSON(out); jerr != nil {
						return jerr
					}
				} else {
					res.WriteText(out)
				}
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	cmd.Flags().StringSliceVar(&tables, "tables", nil, "only these tables (schema.table or table, * ? wildcards; comma-separated)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().BoolVar(&repair, "repair", false, "re-copy the differing ranges from the source snapshot (sinks stay held meanwhile)")
	cmd.Flags().IntVar(&maxKeys, "max-keys", 10, "differing keys named per table and kind")
	cmd.Flags().IntVar(&parallel, "parallel", 4, "ranges compared at once per target")
	cmd.Flags().StringVar(&daemon, "daemon", "", "the running cdcd's endpoint, http://host:port (default: from http.listen)")
	cmd.Flags().BoolVar(&static, "static", false, "do not hold the sinks: compare the targets as they are (the source must take no writes)")
	cmd.Flags().DurationVar(&holdTimeout, "hold-timeout", 5*time.Minute, "longest a sink stays held (released by cdcd after that even if verify dies)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
