// Package config maps cdcd's YAML configuration file onto the options of
// the library's entry point (pipeline.Config) and of the commands around it
// (service, preflight, status). It is the one place where YAML keys meet Go
// fields; the wiring itself lives in pkg/pipeline.
//
// ${NAME} (an environment variable) and ${file:/path} (a file's content, one
// trailing newline trimmed) are expanded inside string values after the
// file is parsed, so a secret may hold any bytes and can never add a key;
// an unset variable or unreadable file is an error. Every `dsn` has a
// sibling `password` that overrides the DSN's password with any bytes.
// Unknown keys are errors, so a typo never silently falls back to a
// default; every error names the key and its line (see Error).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/cdcd-io/cdcd/pkg/capture"
	"github.com/cdcd-io/cdcd/pkg/dsn"
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
	// Cutover configures `cdcd cutover` (cutover.go).
	Cutover Cutover `yaml:"cutover"`

	// ast is the parsed file, for the lines of validation errors.
	ast *ast.File
}

// Source is the `source:` section.
type Source struct {
	// Kind is the source type: "postgres" (pgoutput logical replication, the
	// default) or "trigger" (change-log tables filled by triggers, for
	// databases where logical decoding is not allowed).
	Kind string `yaml:"kind"`
	// DSN is the connection string of the primary or PG16+ standby (kind
	// trigger: of a writable database, the primary or a writable
	// intermediary). Required.
	DSN string `yaml:"dsn"`
	// Password overrides DSN's password; any bytes (use ${NAME} or
	// ${file:/path}). Default: the DSN's own, or libpq's sources (.pgpass).
	Password string `yaml:"password"`
	// PrimaryDSN is the primary's connection string when DSN is a standby.
	PrimaryDSN string `yaml:"primary_dsn"`
	// PrimaryPassword overrides PrimaryDSN's password. Default: the DSN's own.
	PrimaryPassword string `yaml:"primary_password"`
	// Slot is the logical replication slot. Default "cdcd".
	Slot string `yaml:"slot"`
	// Publication is the publication name. Default "cdcd".
	Publication string `yaml:"publication"`
	// Create creates a missing publication (FOR ALL TABLES) and slot; kind
	// trigger: installs the change log and the triggers of the included
	// tables on start (as `cdcd trigger install` does). Default false.
	Create bool `yaml:"create"`
	// Heartbeat is the heartbeat interval; "off" disables. Default 10s.
	Heartbeat Duration `yaml:"heartbeat"`
	// StatusInterval is the standby status update interval. Default 10s.
	StatusInterval Duration `yaml:"status_interval"`
	// PollInterval is how often the change log is read (kind trigger only):
	// an idle database costs one small query per interval. Default 200ms.
	PollInterval Duration `yaml:"poll_interval"`
	// AllowKeyless captures included tables without a primary key or
	// replica identity index, with whole old rows (kind trigger only).
	// Default false: such tables are refused, naming them and the remedy.
	AllowKeyless bool `yaml:"allow_keyless"`
	// Streaming is on, off or auto: large transactions arrive while they
	// run (pgoutput protocol 2) and wait in a spool beside the trail
	// (trail.dir/spool) until their commit, instead of being spilled to the
	// source's disk first. auto turns it on for PostgreSQL 14+. Default auto.
	Streaming string `yaml:"streaming"`
	// ForwardStreamed is auto or off: a streamed transaction is written to
	// the trail as it arrives, before its commit, so that apply works on it
	// while the source still runs or sends it (and takes it back if it
	// aborts). auto turns it on when streaming is, snapshot.mode is never
	// and every sink keeps a transaction invisible until its end (kind
	// postgres, flavor postgres or citus; kind oracle). Default auto.
	ForwardStreamed string `yaml:"forward_streamed"`
	// Failover is on, off or auto: the slot is a PostgreSQL 17 failover
	// slot, kept in sync on standbys with sync_replication_slots, so cdcd
	// continues after a promotion (list every host in dsn with
	// target_session_attrs=read-write). auto: on for a PostgreSQL 17+
	// primary. Default auto.
	Failover string `yaml:"failover"`
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
	// GroupCommitInterval caps the pause between two trail fsyncs (twice
	// the last fsync's duration): what it adds to a commit's latency at
	// most. Default 20ms.
	GroupCommitInterval Duration `yaml:"group_commit_interval"`
	// GroupCommitBytes forces an fsync after this many unsynced bytes. Default 8MiB.
	GroupCommitBytes ByteSize `yaml:"group_commit_bytes"`
	// Ack is what the source's slot is acknowledged up to: durable (what
	// the trail holds, fsynced) or applied (the lowest position every sink
	// has applied: losing the trail loses nothing, but the source keeps
	// WAL while a sink is behind). Default durable.
	Ack string `yaml:"ack"`
}

// Log is the `log:` section.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text, json, or auto (text on a terminal, JSON otherwise). Default auto.
	Format string `yaml:"format"`
}

// Load reads, expands and validates a configuration file. Its errors are
// *Error, prefixed with the file's path.
func Load(path string) (*File, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Err: fmt.Errorf("read config: %w", err)}
	}
	f, err := Parse(raw)
	var e *Error
	if errors.As(err, &e) {
		e.File = path
	}
	return f, err
}

// Parse parses, expands and validates a configuration document. Its errors
// are *Error.
func Parse(raw []byte) (*File, error) {
	var f File
	if len(bytes.TrimSpace(raw)) > 0 {
		file, err := parser.ParseBytes(raw, 0)
		if err != nil {
			return nil, decodeError(nil, err)
		}
		f.ast = file
		for _, d := range file.Docs {
			if err := expand(d); err != nil {
				var e *Error
				if errors.As(err, &e) {
					nameSinks(e, file)
				}
				return nil, err
			}
		}
		if len(file.Docs) > 1 {
			return nil, &Error{Err: errors.New("the file holds several YAML documents (---): use one")}
		}
		if len(file.Docs) == 1 && file.Docs[0].Body != nil {
			if err := yaml.NodeToValue(file.Docs[0].Body, &f, yaml.DisallowUnknownField()); err != nil {
				e := decodeError(file, err).(*Error)
				nameSinks(e, file)
				return nil, e
			}
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

// errAt is an *Error at a key path ("source.dsn", "sinks[1].dsn"), with its
// line when the file has the key; a sink is named by its name.
func (f *File) errAt(path string, err error) error {
	e := &Error{Path: path, Err: err}
	if n := lookup(f.ast, path); n != nil {
		e.Line = line(n)
	}
	nameSinks(e, f.ast)
	return e
}

// withPassword applies a `password` key to its sibling `dsn`.
func (f *File) withPassword(path string, conn *string, password string) error {
	if *conn == "" {
		if password != "" {
			return f.errAt(path, errors.New("password is set but its dsn is empty"))
		}
		return nil
	}
	merged, err := dsn.WithPassword(*conn, password)
	if err != nil {
		return f.errAt(path, fmt.Errorf("cannot parse the connection string (%w): use postgres://user@host:port/db?sslmode=verify-full or host=… user=… dbname=…", err))
	}
	*conn = merged
	return nil
}

func (f *File) validate() error {
	if err := f.validateService(); err != nil {
		return err
	}
	if err := f.validateSnapshot(); err != nil {
		return err
	}
	if err := f.validateKind(); err != nil {
		return err
	}
	if f.Source.DSN == "" {
		return f.errAt("source.dsn", errors.New("is required: the source's connection string, e.g. postgres://cdc@host:5432/app"))
	}
	if err := f.withPassword("source.dsn", &f.Source.DSN, f.Source.Password); err != nil {
		return err
	}
	if err := f.withPassword("source.primary_dsn", &f.Source.PrimaryDSN, f.Source.PrimaryPassword); err != nil {
		return err
	}
	switch f.Capture.Ack {
	case "", "durable", "applied":
	default:
		return f.errAt("capture.ack", fmt.Errorf("%q is not one of durable, applied", f.Capture.Ack))
	}
	switch f.Source.Failover {
	case "", "auto", "on", "off":
	default:
		return f.errAt("source.failover", fmt.Errorf("%q is not one of on, off, auto", f.Source.Failover))
	}
	switch f.Source.Streaming {
	case "", "auto", "on", "off":
	default:
		return f.errAt("source.streaming", fmt.Errorf("%q is not one of on, off, auto", f.Source.Streaming))
	}
	switch f.Source.ForwardStreamed {
	case "", "auto", "off":
	default:
		return f.errAt("source.forward_streamed", fmt.Errorf("%q is not one of auto, off", f.Source.ForwardStreamed))
	}
	if f.Trail.Dir == "" {
		return f.errAt("trail.dir", errors.New("is required: a local directory for the trail, e.g. /var/lib/cdcd/trail"))
	}
	if f.Trail.SegmentBytes != 0 && f.Trail.SegmentBytes < 64<<10 {
		return f.errAt("trail.segment_bytes", fmt.Errorf("%d bytes is too small: use at least 64KiB", f.Trail.SegmentBytes))
	}
	names := map[string]bool{}
	for i := range f.Sinks {
		if err := f.validateSink(i, names); err != nil {
			return err
		}
	}
	switch f.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		return f.errAt("log.level", fmt.Errorf("%q is not one of debug, info, warn, error", f.Log.Level))
	}
	switch f.Log.Format {
	case "", "auto", "text", "json":
	default:
		return f.errAt("log.format", fmt.Errorf("%q is not one of auto, text, json", f.Log.Format))
	}
	return nil
}

// CaptureConfig returns the capture configuration the file describes; log
// is the capture's and the source's logger (nil: discard).
func (f *File) CaptureConfig(log *slog.Logger) capture.Config {
	cfg := capture.Config{
		Source: postgres.Config{
			DSN:             f.Source.DSN,
			PrimaryDSN:      f.Source.PrimaryDSN,
			Slot:            f.Source.Slot,
			Publication:     f.Source.Publication,
			Create:          f.Source.Create,
			Heartbeat:       time.Duration(f.Source.Heartbeat),
			StatusInterval:  time.Duration(f.Source.StatusInterval),
			Streaming:       f.Source.Streaming,
			ForwardStreamed: f.forwardStreamed(),
			Failover:        f.Source.Failover,
		},
		TrailDir:            f.Trail.Dir,
		Trail:               trail.Options{SegmentBytes: int64(f.Trail.SegmentBytes)},
		GroupCommitDelay:    time.Duration(f.Capture.GroupCommitDelay),
		GroupCommitInterval: time.Duration(f.Capture.GroupCommitInterval),
		GroupCommitBytes:    int64(f.Capture.GroupCommitBytes),
		Logger:              log,
	}
	if f.Source.Kind == KindTrigger {
		cfg.Open = f.triggerOpener(log)
	}
	return cfg
}
