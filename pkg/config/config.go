// Package config maps cdcd's YAML configuration file onto the config
// structs of the packages that do the work. It is the one place where YAML
// keys meet Go fields; every other package takes plain structs.
//
// ${NAME} in the file is replaced by the environment variable NAME before
// parsing (for secrets such as passwords); an unset variable is an error.
// Unknown keys are errors, so a typo never silently falls back to a default.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/cdcd-io/cdcd/pkg/capture"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// File is the YAML document.
type File struct {
	Source  Source     `yaml:"source"`
	Trail   Trail      `yaml:"trail"`
	Capture Capture    `yaml:"capture"`
	Sinks   []SinkSpec `yaml:"sinks"`
	Log     Log        `yaml:"log"`
	// HTTP and WALGuard are the service sections (service.go).
	HTTP     HTTP     `yaml:"http"`
	WALGuard WALGuard `yaml:"wal_guard"`
	// Snapshot, Schema, Tables and Mappings are the snapshot and mapping
	// sections (snapshot.go).
	Snapshot Snapshot      `yaml:"snapshot"`
	Schema   SchemaSection `yaml:"schema"`
	Tables   Tables        `yaml:"tables"`
	Mappings []Mapping     `yaml:"mappings"`
}

// Source is the `source:` section.
type Source struct {
	// Kind is the source type; only "postgres" (the default) exists.
	Kind string `yaml:"kind"`
	// DSN is the connection string of the primary or PG16+ standby. Required.
	DSN string `yaml:"dsn"`
	// PrimaryDSN is the primary's connection string when DSN is a standby.
	PrimaryDSN string `yaml:"primary_dsn"`
	// Slot is the logical replication slot. Default "cdcd".
	Slot string `yaml:"slot"`
	// Publication is the publication name. Default "cdcd".
	Publication string `yaml:"publication"`
	// Create creates a missing publication (FOR ALL TABLES) and slot. Default false.
	Create bool `yaml:"create"`
	// Heartbeat is the heartbeat interval; "off" disables. Default 10s.
	Heartbeat Duration `yaml:"heartbeat"`
	// StatusInterval is the standby status update interval. Default 10s.
	StatusInterval Duration `yaml:"status_interval"`
}

// Trail is the `trail:` section.
type Trail struct {
	// Dir is the trail directory. Required.
	Dir string `yaml:"dir"`
	// SegmentBytes is the segment size, e.g. 64MiB. Default 64MiB.
	SegmentBytes ByteSize `yaml:"segment_bytes"`
	// PurgeInterval is how often segments every sink has applied are
	// deleted. Default 10s.
	PurgeInterval Duration `yaml:"purge_interval"`
}

// Capture is the `capture:` section.
type Capture struct {
	// GroupCommitDelay bounds how long a commit waits for its fsync. Default 1ms.
	GroupCommitDelay Duration `yaml:"group_commit_delay"`
	// GroupCommitBytes forces an fsync after this many unsynced bytes. Default 8MiB.
	GroupCommitBytes ByteSize `yaml:"group_commit_bytes"`
}

// Log is the `log:` section.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text, json, or auto (text on a terminal, JSON otherwise). Default auto.
	Format string `yaml:"format"`
}

// Load reads, expands and validates a configuration file.
func Load(path string) (*File, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	f, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return f, nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Parse parses a configuration document.
func Parse(raw []byte) (*File, error) {
	expanded, err := expandEnv(raw)
	if err != nil {
		return nil, err
	}
	var f File
	if len(bytes.TrimSpace(expanded)) > 0 {
		if err := yaml.UnmarshalWithOptions(expanded, &f, yaml.DisallowUnknownField()); err != nil {
			return nil, errors.New(oneLine(yaml.FormatError(err, false, false)))
		}
	}
	if len(f.Sinks) == 0 {
		// The embedded default: print changes as JSON lines.
		f.Sinks = []SinkSpec{{Name: "stdout", Kind: "stdout"}}
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// expandEnv replaces ${NAME} outside comments with the environment
// variable NAME; an unset one is an error.
func expandEnv(raw []byte) ([]byte, error) {
	var out []byte
	for _, line := range bytes.SplitAfter(raw, []byte("\n")) {
		code, comment := splitComment(line)
		var missing string
		code = envRef.ReplaceAllFunc(code, func(m []byte) []byte {
			name := string(envRef.FindSubmatch(m)[1])
			v, ok := os.LookupEnv(name)
			if !ok && missing == "" {
				missing = name
			}
			return []byte(v)
		})
		if missing != "" {
			return nil, fmt.Errorf("environment variable %s is not set (referenced as ${%s})", missing, missing)
		}
		out = append(append(out, code...), comment...)
	}
	return out, nil
}

// splitComment splits a YAML line before its comment: a # at the start or
// after a blank, outside quotes.
func splitComment(line []byte) (code, comment []byte) {
	var quote byte
	for i, c := range line {
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return line[:i], line[i:]
		}
	}
	return line, nil
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func (f *File) validate() error {
	if err := f.validateService(); err != nil {
		return err
	}
	if err := f.validateSnapshot(); err != nil {
		return err
	}
	switch f.Source.Kind {
	case "", "postgres":
	default:
		return fmt.Errorf("source.kind %q is not supported: use postgres", f.Source.Kind)
	}
	if f.Source.DSN == "" {
		return errors.New("source.dsn is required: the source's connection string, e.g. postgres://cdc@host:5432/app")
	}
	if f.Trail.Dir == "" {
		return errors.New("trail.dir is required: a local directory for the trail, e.g. /var/lib/cdcd/trail")
	}
	if f.Trail.SegmentBytes != 0 && f.Trail.SegmentBytes < 64<<10 {
		return fmt.Errorf("trail.segment_bytes %d is too small: use at least 64KiB", f.Trail.SegmentBytes)
	}
	names := map[string]bool{}
	for i, s := range f.Sinks {
		key := fmt.Sprintf("sinks[%d]", i)
		if s.Name == "" {
			return fmt.Errorf("%s.name is required: a unique name keys the sink's checkpoint", key)
		}
		if names[s.Name] {
			return fmt.Errorf("%s.name %q is used twice: sink names must be unique", key, s.Name)
		}
		names[s.Name] = true
		switch s.Kind {
		case "postgres":
			if s.DSN == "" {
				return fmt.Errorf("%s.dsn is required for a postgres sink", key)
			}
		case "kafka":
			if err := kafkaConfig(s).Validate(); err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			if s.Database == "" {
				f.Sinks[i].Database = sourceDatabase(f.Source.DSN)
			}
		case "stdout":
		case "":
			return fmt.Errorf("%s.kind is required: postgres, kafka or stdout", key)
		default:
			return fmt.Errorf("%s.kind %q is not supported: use postgres, kafka or stdout", key, s.Kind)
		}
		if s.Batch.MaxRows < 0 {
			return fmt.Errorf("%s.batch.max_rows must not be negative", key)
		}
	}
	switch f.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level %q is not one of debug, info, warn, error", f.Log.Level)
	}
	switch f.Log.Format {
	case "", "auto", "text", "json":
	default:
		return fmt.Errorf("log.format %q is not one of auto, text, json", f.Log.Format)
	}
	return nil
}

// CaptureConfig returns the capture configuration the file describes.
func (f *File) CaptureConfig() capture.Config {
	hb := time.Duration(f.Source.Heartbeat)
	return capture.Config{
		Source: postgres.Config{
			DSN:            f.Source.DSN,
			PrimaryDSN:     f.Source.PrimaryDSN,
			Slot:           f.Source.Slot,
			Publication:    f.Source.Publication,
			Create:         f.Source.Create,
			Heartbeat:      hb,
			StatusInterval: time.Duration(f.Source.StatusInterval),
		},
		TrailDir:         f.Trail.Dir,
		Trail:            trail.Options{SegmentBytes: int64(f.Trail.SegmentBytes)},
		GroupCommitDelay: time.Duration(f.Capture.GroupCommitDelay),
		GroupCommitBytes: int64(f.Capture.GroupCommitBytes),
	}
}
