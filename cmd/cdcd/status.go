package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cdcd-io/cdcd/pkg/config"
	"github.com/cdcd-io/cdcd/pkg/status"
)

func newStatusCmd() *cobra.Command {
	var path, url string
	var asJSON, table bool
	cmd := &cobra.Command{
		Use:   "status --config FILE",
		Short: "Positions and lag of every stage: from the running daemon's endpoint, or from the trail and checkpoints when it is down",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := config.Load(path)
			if err != nil {
				return err
			}
			if url == "" {
				url = f.StatusURL()
			}
			r, err := liveStatus(cmd.Context(), url)
			if err != nil {
				r = status.FromDisk(cmd.Context(), f.DiskStatusConfig())
				if url != "" {
					r.Warnings = append(r.Warnings, "no daemon answered at "+url+": "+err.Error())
				}
			}
			out := cmd.OutOrStdout()
			useTable := table || (!asJSON && isTerminal(out))
			if useTable {
				return r.WriteTable(out)
			}
			return r.WriteJSON(out)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	cmd.Flags().StringVar(&url, "url", "", "the daemon's status URL (default: from http.listen)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (the default when stdout is not a terminal)")
	cmd.Flags().BoolVar(&table, "table", false, "print a table (the default on a terminal)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// liveStatus asks the running daemon.
func liveStatus(ctx context.Context, url string) (*status.Report, error) {
	if url == "" {
		return nil, fmt.Errorf("http endpoint is off")
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	var r status.Report
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", url, err)
	}
	return &r, nil
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
