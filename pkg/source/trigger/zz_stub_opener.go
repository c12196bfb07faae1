// TEMPORARY stub (branch h7-trigger-cli): the Source implementation and its
// NewOpener are being built in parallel in pkg/source/trigger/source.go.
// Delete this file at merge.

package trigger

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/cdcd-io/cdcd/pkg/source"
)

// Config configures the trigger source (TEMPORARY stub: see source.go).
type Config struct {
	DSN          string
	Include      func(schema, table string) bool
	Create       bool
	AllowKeyless bool
	PollInterval time.Duration
	StateDir     string
	Logger       *slog.Logger
}

// NewOpener returns an opener of the trigger source (TEMPORARY stub: it
// always fails).
func NewOpener(cfg Config) source.Opener {
	return func(context.Context) (source.Source, source.Identity, error) {
		return nil, source.Identity{}, errors.New("trigger source: not wired yet")
	}
}
