package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cdcd-io/cdcd/pkg/config"
	"github.com/cdcd-io/cdcd/pkg/preflight"
)

// errChecksFailed makes `cdcd check` exit 1 after its report.
var errChecksFailed = errors.New("preflight checks failed: fix the FAIL lines above and run cdcd check again")

func newCheckCmd() *cobra.Command {
	var path string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check --config FILE",
		Short: "Preflight: check the source, every sink and the trail directory; one line per check, exit 0 only when nothing fails",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := config.Load(path)
			if err != nil {
				return err
			}
			rs := preflight.Run(cmd.Context(), f.PreflightConfig())
			out := cmd.OutOrStdout()
			if asJSON {
				err = preflight.WriteJSON(out, rs)
			} else {
				err = preflight.WriteText(out, rs)
			}
			if err != nil {
				return fmt.Errorf("write report: %w", err)
			}
			if preflight.Failed(rs) {
				return errChecksFailed // on stderr: stdout stays the report
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the results as JSON")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
