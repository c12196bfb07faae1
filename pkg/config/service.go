package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/preflight"
	"github.com/cdcd-io/cdcd/pkg/service"
	"github.com/cdcd-io/cdcd/pkg/sink/oracle"
	"github.com/cdcd-io/cdcd/pkg/status"
)

// HTTP is the `http:` section: the daemon's /metrics, /healthz, /readyz and
// /status endpoint.
type HTTP struct {
	// Listen is the endpoint's address. Default 127.0.0.1:8432 (loopback
	// only); "off" disables it (then `cdcd status` reads the files).
	Listen string `yaml:"listen"`
	// ReadyMaxLag: /readyz answers 503 while a sink is further behind the
	// source than this. Default 60s.
	ReadyMaxLag Duration `yaml:"ready_max_lag"`
	// ReadyMaxLagBytes: /readyz answers 503 while a sink is more than this
	// much WAL behind. Default 0: not checked.
	ReadyMaxLagBytes ByteSize `yaml:"ready_max_lag_bytes"`
}

// WALGuard is the `wal_guard:` section: thresholds on the WAL the source's
// replication slot retains.
type WALGuard struct {
	// Interval is how often the slot is read. Default 10s.
	Interval Duration `yaml:"interval"`
	// WarnBytes: retained WAL at which the guard logs a warning. Default 1GiB.
	WarnBytes ByteSize `yaml:"warn_bytes"`
	// AlertBytes: retained WAL at which it logs an error and sets
	// cdcd_wal_guard_level to 2 (wal_status unreserved does too). Default 4GiB.
	AlertBytes ByteSize `yaml:"alert_bytes"`
}

func (f *File) validateService() error {
	if f.HTTP.ReadyMaxLag < 0 {
		return f.errAt("http.ready_max_lag", errors.New("cannot be off: use a duration such as 60s"))
	}
	if f.WALGuard.Interval < 0 {
		return f.errAt("wal_guard.interval", errors.New("cannot be off: use a duration such as 10s"))
	}
	w, a := f.WALGuard.WarnBytes, f.WALGuard.AlertBytes
	if w > 0 && a > 0 && a < w {
		return f.errAt("wal_guard.alert_bytes", fmt.Errorf("%d is below warn_bytes (%d): the alert threshold must be the higher one", a, w))
	}
	return nil
}

// ServiceConfig returns the daemon's service configuration.
func (f *File) ServiceConfig(log *slog.Logger) service.Config {
	return service.Config{
		Listen:           f.HTTP.Listen,
		ReadyMaxLag:      time.Duration(f.HTTP.ReadyMaxLag),
		ReadyMaxLagBytes: int64(f.HTTP.ReadyMaxLagBytes),
		Guard: service.GuardConfig{
			Off:        f.Source.Kind == KindTrigger,
			Interval:   time.Duration(f.WALGuard.Interval),
			WarnBytes:  int64(f.WALGuard.WarnBytes),
			AlertBytes: int64(f.WALGuard.AlertBytes),
		},
		Logger: log,
	}
}

// StatusURL is the running daemon's /status URL ("" when http is off).
func (f *File) StatusURL() string {
	switch f.HTTP.Listen {
	case "off":
		return ""
	case "":
		return "http://" + service.DefaultListen + "/status"
	}
	host, port, err := net.SplitHostPort(f.HTTP.Listen)
	if err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		return "http://127.0.0.1:" + port + "/status" // listening on every address: ask loopback
	}
	return "http://" + f.HTTP.Listen + "/status"
}

// DiskStatusConfig says where `cdcd status` finds positions while the
// daemon is down.
func (f *File) DiskStatusConfig() status.DiskConfig {
	cfg := status.DiskConfig{TrailDir: f.Trail.Dir, SourceDSN: f.Source.DSN, Slot: f.Source.Slot}
	if f.Source.Kind == KindTrigger {
		cfg.SourceDSN = "" // no slot to read
	}
	for _, s := range f.Sinks {
		ds := status.DiskSink{Name: s.Name, Kind: s.Kind}
		if s.Kind == "postgres" {
			dsn, table, name := s.DSN, s.CheckpointTable, s.Name
			ds.Position = func(ctx context.Context) (uint64, change.LSN, error) {
				return status.PostgresPosition(ctx, dsn, table, name)
			}
		}
		if s.Kind == "oracle" {
			oc := OracleConfig(s)
			ds.Position = func(ctx context.Context) (uint64, change.LSN, error) {
				p, err := oracle.ReadPosition(ctx, oc)
				return p.Seq, p.EndLSN, err
			}
		}
		cfg.Sinks = append(cfg.Sinks, ds)
	}
	return cfg
}

// PreflightConfig returns what `cdcd check` checks.
func (f *File) PreflightConfig() preflight.Config {
	cfg := preflight.Config{Source: f.CaptureConfig(nil).Source, TrailDir: f.Trail.Dir, AckApplied: f.Capture.Ack == "applied"}
	if f.Source.Kind == KindTrigger {
		tc := f.TriggerConfig(nil)
		// The change log is the trigger source's WAL retention: the same
		// thresholds apply to its size.
		cfg.Trigger = &preflight.Trigger{DSN: tc.DSN, Include: tc.Include, Create: tc.Create, AllowKeyless: tc.AllowKeyless,
			WarnBytes: int64(f.WALGuard.WarnBytes), AlertBytes: int64(f.WALGuard.AlertBytes)}
	}
	for _, s := range f.Sinks {
		ps := preflight.Sink{Name: s.Name, Kind: s.Kind, DSN: s.DSN,
			CheckpointTable: s.CheckpointTable, Brokers: s.Brokers, IAM: s.IAM.Region != "",
			Postgres: PostgresSinkConfig(s)}
		if s.Kind == "oracle" {
			oc := OracleConfig(s)
			ps.Oracle = &oc
		}
		if s.Kind == "dynamodb" {
			dc := s.DynamoDBConfig(nil)
			ps.DynamoDB = &dc
		}
		cfg.Sinks = append(cfg.Sinks, ps)
	}
	return cfg
}
