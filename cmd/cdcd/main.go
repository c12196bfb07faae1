// Command cdcd is the change-data-capture daemon: it captures PostgreSQL
// logical replication into a durable local trail and (with later commands)
// applies it to sinks.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cdcd-io/cdcd/pkg/config"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	stopProfile := startProfile()
	err := newRoot().ExecuteContext(ctx)
	stopProfile()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cdcd: "+withRemedy(err).Error())
		os.Exit(exitCode(err))
	}
}

// withRemedy adds the configuration key that cures an error the library
// reports without knowing the YAML: `cdcd trigger install` and `cdcd run`
// with source.create alike.
func withRemedy(err error) error {
	if errors.Is(err, trigger.ErrNoKey) {
		return fmt.Errorf("%w (source.allow_keyless: true), or leave them out with tables.exclude", err)
	}
	return err
}

// exitCode is 2 for a bad configuration file (nothing was started), 1 for
// every other failure.
func exitCode(err error) int {
	var cfgErr *config.Error
	if errors.As(err, &cfgErr) {
		return 2
	}
	return 1
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "cdcd",
		Short:         "Change data capture for PostgreSQL: pgoutput → durable trail → sinks",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(newRunCmd(), newCaptureCmd(), newTrailCmd(), newCheckCmd(), newStatusCmd(), newTriggerCmd(), newVerifyCmd(), newCutoverCmd())
	return root
}

// newLogger builds the process logger: text on a terminal, JSON otherwise
// (journald, files), unless format says otherwise.
func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if level == "" {
		level = "info"
	}
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "", "auto":
		if term.IsTerminal(int(os.Stderr.Fd())) {
			return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, errors.New("log format " + format + ": use auto, text or json")
}
