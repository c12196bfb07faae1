package config

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cdcd-io/cdcd/pkg/source"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

// The source kinds (source.kind).
const (
	// KindPostgres is pgoutput logical replication (the default).
	KindPostgres = "postgres"
	// KindTrigger is change-log tables filled by triggers.
	KindTrigger = "trigger"
)

// defaultPollInterval is source.poll_interval's default.
const defaultPollInterval = 200 * time.Millisecond

// postgresOnly are the source keys that mean nothing to the trigger kind;
// triggerOnly the reverse. Setting one for the other kind is an error, so a
// setting never silently does nothing.
var (
	postgresOnly = []string{"slot", "publication", "primary_dsn", "primary_password", "heartbeat", "status_interval"}
	triggerOnly  = []string{"poll_interval", "allow_keyless"}
)

// has reports whether the file sets the key at path.
func (f *File) has(path string) bool { return lookup(f.ast, path) != nil }

func (f *File) validateKind() error {
	switch f.Source.Kind {
	case "", KindPostgres:
		for _, k := range triggerOnly {
			if f.has("source." + k) {
				return f.errAt("source."+k, errors.New("applies to kind trigger only: remove it, or set source.kind: trigger"))
			}
		}
		return nil
	case KindTrigger:
	default:
		return f.errAt("source.kind", fmt.Errorf("%q is not supported: use postgres or trigger", f.Source.Kind))
	}
	for _, k := range postgresOnly {
		if f.has("source." + k) {
			return f.errAt("source."+k, errors.New("applies to kind postgres only: remove it (the trigger source has no slot, publication or standby)"))
		}
	}
	if f.Source.PollInterval < 0 {
		return f.errAt("source.poll_interval", errors.New("cannot be off: use a duration such as 200ms"))
	}
	for i, m := range f.Mappings {
		if m.Where != "" {
			return f.errAt(fmt.Sprintf("mappings[%d].where", i), errors.New("applies to kind postgres only "+
				"(it is a publication row filter): remove it, or filter on the target"))
		}
	}
	return nil
}

// TriggerConfig returns the trigger source's configuration (kind trigger):
// the tables: include/exclude patterns choose the tables that get
// triggers, and the source keeps its position in the trail directory.
func (f *File) TriggerConfig(log *slog.Logger) trigger.Config {
	include := func(string, string) bool { return false }
	if m, err := f.Map(); err == nil { // Parse has checked the patterns
		include = m.Includes
	}
	poll := time.Duration(f.Source.PollInterval)
	if poll <= 0 {
		poll = defaultPollInterval
	}
	return trigger.Config{
		DSN:          f.Source.DSN,
		Include:      include,
		Create:       f.Source.Create,
		AllowKeyless: f.Source.AllowKeyless,
		PollInterval: poll,
		StateDir:     f.Trail.Dir,
		Logger:       log,
	}
}

func (f *File) triggerOpener(log *slog.Logger) source.Opener {
	return trigger.NewOpener(f.TriggerConfig(log))
}
