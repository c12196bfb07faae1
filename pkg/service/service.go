// Package service runs a pipeline as an unattended daemon: an HTTP endpoint
// (/metrics in Prometheus format, /healthz, /readyz, /status), the
// WAL-retention guard that watches the source's slot, and systemd
// integration (READY=1 after the first successful connect to the source,
// WATCHDOG=1 pings while capture's stream loop turns).
//
// Metrics are added as decorators at wiring time: every sink opener is
// wrapped so applied batches are measured, and capture reports each change
// through its OnChange hook. Positions and lags come from one status.Report
// built on demand, so /metrics and /status always agree.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdcd-io/cdcd/pkg/apply"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/pipeline"
	"github.com/cdcd-io/cdcd/pkg/status"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// DefaultListen is the HTTP endpoint's default address: loopback only, so
// metrics and status are not exposed beyond the host unless asked.
const DefaultListen = "127.0.0.1:8432"

// Config configures the service around a pipeline. The zero value of every
// field means its default.
type Config struct {
	// Listen is the HTTP endpoint's address. Default DefaultListen, best
	// effort: when another process holds it, cdcd logs a warning and runs
	// without the endpoint (an address set explicitly must be free). "off"
	// disables the endpoint.
	Listen string
	// ReadyMaxLag: /readyz fails while a sink is further behind the source
	// than this. Default 60s.
	ReadyMaxLag time.Duration
	// ReadyMaxLagBytes: /readyz fails while a sink is more than this many
	// bytes of WAL behind. Default 0: not checked.
	ReadyMaxLagBytes int64
	// StallAfter: /healthz fails, and systemd watchdog pings stop, when
	// capture's stream loop has not turned for this long while streaming.
	// Default 3 × the source's status interval + 30s.
	StallAfter time.Duration
	// Guard configures the WAL-retention guard.
	Guard GuardConfig
	// Notify sends a systemd notification. Default: sd_notify to
	// $NOTIFY_SOCKET (nothing when it is unset).
	Notify func(state string) error
	// WatchdogInterval is the systemd watchdog timeout. Default: from
	// $WATCHDOG_USEC (no pings when unset).
	WatchdogInterval time.Duration
	// Logger receives structured logs. Default: the pipeline's.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Service is a pipeline with its endpoint, guard and systemd integration.
type Service struct {
	cfg   Config
	log   *slog.Logger
	p     *pipeline.Pipeline
	trail string
	reg   *prometheus.Registry
	m     *metrics
	mon   *monitor
	txs   txLog

	defaultListen bool        // Listen was not configured: binding is best effort
	connected     atomic.Bool // capture streamed at least once
	addr          atomic.Pointer[string]
	readyOnce     sync.Once
}

// New builds the pipeline described by pc, decorated with metrics.
func New(pc pipeline.Config, cfg Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = pc.Logger
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s0 := &Service{}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
		s0.defaultListen = true
	}
	if cfg.ReadyMaxLag <= 0 {
		cfg.ReadyMaxLag = time.Minute
	}
	src := pc.Capture.Source.Defaults()
	if cfg.StallAfter <= 0 {
		cfg.StallAfter = 3*src.StatusInterval + 30*time.Second
	}
	if cfg.Notify == nil {
		cfg.Notify = func(state string) error { _, err := daemon.SdNotify(false, state); return err }
	}
	if cfg.WatchdogInterval == 0 {
		d, err := daemon.SdWatchdogEnabled(false)
		if err != nil {
			return nil, fmt.Errorf("systemd watchdog: %w", err)
		}
		cfg.WatchdogInterval = d
	}
	s := s0
	s.cfg, s.log, s.trail, s.reg = cfg, cfg.Logger, pc.Capture.TrailDir, prometheus.NewRegistry()
	s.m = newMetrics(s.reg, s.Report)
	s.mon = &monitor{cfg: cfg.Guard.defaults(), dsn: src.DSN, slot: src.Slot, log: cfg.Logger, now: cfg.Now,
		alerts: func(l Level) { s.m.guardAlerts.WithLabelValues(l.String()).Inc() }}
	inner := pc.WrapSink
	pc.WrapSink = func(name string, open apply.OpenFunc) apply.OpenFunc {
		if inner != nil {
			open = inner(name, open)
		}
		return s.m.wrapOpen(name, open)
	}
	p, err := pipeline.New(pc)
	if err != nil {
		return nil, err
	}
	s.p = p
	c := p.Capture()
	c.OnChange = s.m.onCapture
	c.OnDurable = func(d change.LSN) { s.txs.add(d, c.Stats().Transactions) }
	c.OnConnected = s.onConnected
	return s, nil
}

// Pipeline returns the running pipeline.
func (s *Service) Pipeline() *pipeline.Pipeline { return s.p }

// Addr is the HTTP endpoint's bound address once Run listens ("" before,
// and when the endpoint is off).
func (s *Service) Addr() string {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// Registry is the service's Prometheus registry.
func (s *Service) Registry() *prometheus.Registry { return s.reg }

func (s *Service) onConnected() {
	s.connected.Store(true)
	s.readyOnce.Do(func() {
		s.log.Info("connected to the source: ready")
		s.notify("READY=1\nSTATUS=streaming")
	})
}

func (s *Service) notify(state string) {
	if err := s.cfg.Notify(state); err != nil {
		s.log.Warn("systemd notify failed", "err", err)
	}
}

// Run runs the pipeline, the endpoint, the guard and the watchdog until ctx
// is cancelled (nil after a clean drain), the pipeline fails, or the guard
// finds the slot invalidated (an ErrSlotInvalidated error).
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var srv *http.Server
	if s.cfg.Listen != "off" {
		ln, err := net.Listen("tcp", s.cfg.Listen)
		switch {
		case err != nil && !s.defaultListen:
			return fmt.Errorf("http.listen %s: %w: choose a free address or \"off\"", s.cfg.Listen, err)
		case err != nil:
			s.log.Warn("running without the http endpoint: the default address is taken; set http.listen", "err", err)
		default:
			a := ln.Addr().String()
			s.addr.Store(&a)
			srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
			go func() {
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					s.log.Error("http endpoint stopped", "err", err)
				}
			}()
			s.log.Info("http endpoint listening", "addr", a, "paths", "/metrics /healthz /readyz /status")
		}
	}
	var guardErr atomic.Pointer[error]
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.mon.run(ctx, func(err error) { guardErr.Store(&err); cancel() })
	}()
	go func() {
		defer wg.Done()
		s.watchdog(ctx)
	}()
	err := s.p.Run(ctx)
	cancel()
	wg.Wait()
	s.notify("STOPPING=1")
	if srv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		scancel()
	}
	if g := guardErr.Load(); g != nil {
		return *g
	}
	return err
}

// watchdog pings systemd at a third of its timeout while the service is
// healthy; a stalled stream loop stops the pings and systemd restarts cdcd.
func (s *Service) watchdog(ctx context.Context) {
	if s.cfg.WatchdogInterval <= 0 {
		return
	}
	t := time.NewTicker(s.cfg.WatchdogInterval / 3)
	defer t.Stop()
	for {
		if ok, why := s.Healthy(); ok {
			s.notify("WATCHDOG=1")
		} else {
			s.log.Error("not pinging the systemd watchdog: "+why, "watchdog", s.cfg.WatchdogInterval)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Healthy is /healthz: false only when capture's stream loop is stuck.
func (s *Service) Healthy() (bool, string) {
	last := s.p.Capture().LastLoop()
	if last.IsZero() {
		return true, "not streaming (connecting or waiting to reconnect)"
	}
	if d := s.cfg.Now().Sub(last); d > s.cfg.StallAfter {
		return false, fmt.Sprintf("capture's stream loop has not turned for %s", d.Round(time.Second))
	}
	return true, "streaming"
}

// Report builds the live status report. Safe for concurrent use.
func (s *Service) Report() *status.Report {
	now := s.cfg.Now()
	slot, readErr, level := s.mon.snapshot()
	r := &status.Report{Time: now, Running: true, Slot: slot.Slot, Trail: status.Trail{Dir: s.trail}}
	r.Slot.Guard = level.String()
	if readErr != "" {
		r.Slot.Error = readErr
	}
	c := s.p.Capture()
	cs := c.Stats()
	capPos := max(cs.Durable, cs.Acked)
	var trailEnd change.LSN
	if w := c.Trail(); w != nil {
		trailEnd = w.LastEndLSN()
		capPos = max(capPos, trailEnd)
		r.Trail.NextSeq = w.NextSeq()
	}
	r.Capture = status.Capture{
		Connected: !c.LastLoop().IsZero(), Position: capPos.String(), Acked: cs.Acked.String(),
		Transactions: cs.Transactions, Changes: cs.Changes, Reconnects: cs.Reconnects,
		Fsyncs: cs.Syncs, FsyncSeconds: cs.SyncTime.Seconds(),
		Forwarded: cs.Forwarded, Withdrawn: cs.Withdrawn,
	}
	if slot.Server > capPos {
		r.Capture.LagBytes = int64(slot.Server - capPos)
		r.Capture.LagSeconds = s.mon.lagSeconds(capPos, now)
	}
	if segs, err := trail.Segments(s.trail); err != nil {
		r.Trail.Error = err.Error()
	} else {
		r.Trail.Segments = len(segs)
		for _, g := range segs {
			r.Trail.Bytes += g.Bytes
		}
		if len(segs) > 0 {
			r.Trail.FirstSeq = segs[0].FirstSeq
		}
	}
	snaps := s.p.Snapshots()
	for i, w := range s.p.Workers() {
		ws := w.Stats()
		k := status.Sink{Name: w.Name(), Seq: ws.Position.Seq, Position: ws.Position.EndLSN.String(),
			Transactions: ws.Transactions, Rows: ws.Rows, Retries: ws.Retries, LastError: ws.LastError, Stopped: ws.Stopped}
		if i < len(snaps) && snaps[i] != nil {
			pg := snaps[i].Progress()
			sp := &status.Snapshot{Mode: pg.Mode, ID: pg.ID, Running: pg.Running, Complete: pg.Complete, Tables: len(pg.Tables)}
			for _, tp := range pg.Tables {
				sp.Rows += tp.Rows
				sp.RowsEstimate += tp.RowsEstimate
				if tp.Finished {
					sp.TablesDone++
				}
			}
			k.Snapshot = sp
		}
		pos := ws.Position.EndLSN
		if pos >= trailEnd {
			// Everything committed in the trail is applied: the sink is
			// as far as capture.
			pos = max(pos, capPos)
		} else {
			k.LagTransactions = s.txs.behind(ws.Position.EndLSN)
		}
		if slot.Server > pos {
			k.LagBytes = int64(slot.Server - pos)
			k.LagSeconds = s.mon.lagSeconds(pos, now)
		}
		r.Sinks = append(r.Sinks, k)
	}
	r.Ready, r.NotReady = s.readiness(r, level)
	return r
}

// readiness is /readyz: capture has connected, the slot is not lost, and
// every sink runs and is within the lag thresholds.
func (s *Service) readiness(r *status.Report, level Level) (bool, string) {
	if !s.connected.Load() {
		return false, "capture has not connected to the source yet"
	}
	if level == LevelLost {
		return false, "the replication slot is invalidated"
	}
	for _, k := range r.Sinks {
		switch {
		case k.Stopped:
			return false, fmt.Sprintf("sink %s stopped: %s", k.Name, k.LastError)
		case k.LagSeconds > s.cfg.ReadyMaxLag.Seconds():
			return false, fmt.Sprintf("sink %s is %.1fs behind the source (ready_max_lag %s)", k.Name, k.LagSeconds, s.cfg.ReadyMaxLag)
		case s.cfg.ReadyMaxLagBytes > 0 && k.LagBytes > s.cfg.ReadyMaxLagBytes:
			return false, fmt.Sprintf("sink %s is %s behind the source (ready_max_lag_bytes %s)", k.Name, status.Bytes(k.LagBytes), status.Bytes(s.cfg.ReadyMaxLagBytes))
		}
	}
	return true, ""
}
