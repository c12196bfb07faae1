package service

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cdcd-io/cdcd/pkg/apply"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/status"
)

// metrics are the event-driven series; the position and lag series are
// read from a status report at scrape time (reportCollector).
type metrics struct {
	captured     *prometheus.CounterVec
	applied      *prometheus.CounterVec
	batchRows    *prometheus.HistogramVec
	batchBytes   *prometheus.HistogramVec
	batchSeconds *prometheus.HistogramVec
	sinkErrors   *prometheus.CounterVec
	guardAlerts  *prometheus.CounterVec

	capCache map[*change.Relation]*[opCount]prometheus.Counter // capture goroutine only
}

const opCount = int(change.OpMessage) + 1

func newMetrics(reg *prometheus.Registry, report func() *status.Report) *metrics {
	m := &metrics{
		captured: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdcd_capture_events_total",
			Help: "Changes written to the trail, by table and operation."}, []string{"table", "op"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdcd_sink_events_total",
			Help: "Changes applied by a sink, by table and operation."}, []string{"sink", "table", "op"}),
		batchRows: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cdcd_sink_batch_rows",
			Help: "Row changes per applied batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)}, []string{"sink"}),
		batchBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cdcd_sink_batch_bytes",
			Help: "Approximate value bytes per applied batch.", Buckets: prometheus.ExponentialBuckets(256, 4, 10)}, []string{"sink"}),
		batchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cdcd_sink_batch_duration_seconds",
			Help: "Time a sink took to apply a batch.", Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12)}, []string{"sink"}),
		sinkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdcd_sink_errors_total",
			Help: "Failed sink opens and batch applies (each is retried or stops the sink)."}, []string{"sink"}),
		guardAlerts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdcd_wal_guard_events_total",
			Help: "Times the WAL-retention guard rose to a level."}, []string{"level"}),
		capCache: map[*change.Relation]*[opCount]prometheus.Counter{},
	}
	reg.MustRegister(m.captured, m.applied, m.batchRows, m.batchBytes, m.batchSeconds, m.sinkErrors, m.guardAlerts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&reportCollector{report: report})
	return m
}

// onCapture counts one change written to the trail (capture's OnChange).
func (m *metrics) onCapture(c *change.Change) {
	if c.Op == change.OpTruncate && c.Truncate != nil {
		for _, rel := range c.Truncate.Relations {
			countChange(m.capCache, m.captured, nil, rel, c.Op)
		}
		return
	}
	countChange(m.capCache, m.captured, nil, c.Relation, c.Op)
}

// countChange increments the counter of (rel, op), caching the counters per
// relation so the hot path does no label hashing. prefix precedes the table
// and op labels.
func countChange(cache map[*change.Relation]*[opCount]prometheus.Counter, vec *prometheus.CounterVec, prefix []string, rel *change.Relation, op change.Op) {
	if int(op) >= opCount {
		return
	}
	cs := cache[rel]
	if cs == nil {
		if len(cache) > 10000 {
			clear(cache) // relations are per schema version and session; never grow without bound
		}
		cs = new([opCount]prometheus.Counter)
		cache[rel] = cs
	}
	if cs[op] == nil {
		table := ""
		if rel != nil {
			table = rel.Schema + "." + rel.Name
		}
		cs[op] = vec.WithLabelValues(append(append([]string(nil), prefix...), table, op.String())...)
	}
	cs[op].Inc()
}

// wrapOpen decorates a sink opener so every sink it opens is measured.
func (m *metrics) wrapOpen(name string, open apply.OpenFunc) apply.OpenFunc {
	return func(ctx context.Context) (sink.Sink, error) {
		s, err := open(ctx)
		if err != nil {
			m.sinkErrors.WithLabelValues(name).Inc()
			return nil, err
		}
		ms := &measured{Sink: s, m: m, name: name, cache: map[*change.Relation]*[opCount]prometheus.Counter{},
			rows: m.batchRows.WithLabelValues(name), bytes: m.batchBytes.WithLabelValues(name),
			seconds: m.batchSeconds.WithLabelValues(name), errors: m.sinkErrors.WithLabelValues(name)}
		// Keep the optional abilities visible to apply's type assertions.
		return sink.Decorate(ms, s), nil
	}
}

// measured is a sink decorated with metrics. Apply is called from one
// goroutine, so cache needs no lock.
type measured struct {
	sink.Sink
	m                    *metrics
	name                 string
	cache                map[*change.Relation]*[opCount]prometheus.Counter
	rows, bytes, seconds prometheus.Observer
	errors               prometheus.Counter
}

func (s *measured) Apply(ctx context.Context, b *sink.Batch) error {
	start := time.Now()
	err := s.Sink.Apply(ctx, b)
	if err != nil {
		s.errors.Inc()
		return err
	}
	s.seconds.Observe(time.Since(start).Seconds())
	s.rows.Observe(float64(b.Rows))
	s.bytes.Observe(float64(b.Bytes))
	prefix := []string{s.name}
	for _, tx := range b.Txs {
		for _, c := range tx.Changes {
			if c.Op == change.OpTruncate && c.Truncate != nil {
				for _, rel := range c.Truncate.Relations {
					countChange(s.cache, s.m.applied, prefix, rel, c.Op)
				}
				continue
			}
			countChange(s.cache, s.m.applied, prefix, c.Relation, c.Op)
		}
	}
	return nil
}

var _ sink.Sink = (*measured)(nil)

// reportCollector turns a status report into gauges and counters at scrape
// time, so /metrics and /status never disagree.
type reportCollector struct {
	report func() *status.Report
}

var (
	descReady            = prometheus.NewDesc("cdcd_ready", "1 when /readyz would answer 200.", nil, nil)
	descCaptureConnected = prometheus.NewDesc("cdcd_capture_connected", "1 while capture streams from the source.", nil, nil)
	descCaptureTx        = prometheus.NewDesc("cdcd_capture_transactions_total", "Transactions written to the trail by this process.", nil, nil)
	descCaptureChanges   = prometheus.NewDesc("cdcd_capture_changes_total", "Changes written to the trail by this process.", nil, nil)
	descCaptureReconn    = prometheus.NewDesc("cdcd_capture_reconnects_total", "Source sessions that ended in an error and were retried.", nil, nil)
	descCaptureForwarded = prometheus.NewDesc("cdcd_capture_forwarded_total", "Streamed transactions written to the trail as they arrived, before their commit.", nil, nil)
	descCaptureWithdrawn = prometheus.NewDesc("cdcd_capture_withdrawn_total", "Forwarded transactions the source took back (aborted, or another committed first); they are written again whole if they commit.", nil, nil)
	descCaptureFsyncs    = prometheus.NewDesc("cdcd_capture_trail_fsyncs_total", "Trail group commits (fsyncs) by this process.", nil, nil)
	descCaptureFsyncSec  = prometheus.NewDesc("cdcd_capture_trail_fsync_seconds_total", "Time the trail's group commits took.", nil, nil)
	descCaptureLagBytes  = prometheus.NewDesc("cdcd_capture_lag_bytes", "Source WAL position minus what the trail holds durably.", nil, nil)
	descCaptureLagSec    = prometheus.NewDesc("cdcd_capture_lag_seconds", "How long ago the source's WAL passed capture's position.", nil, nil)
	descCapturePos       = prometheus.NewDesc("cdcd_capture_position_lsn", "Source LSN the trail holds durably, as a number.", nil, nil)
	descSourceLSN        = prometheus.NewDesc("cdcd_source_wal_lsn", "Source's current WAL position, as a number.", nil, nil)
	descRetained         = prometheus.NewDesc("cdcd_source_slot_retained_wal_bytes", "WAL the replication slot keeps on the source.", nil, nil)
	descSafe             = prometheus.NewDesc("cdcd_source_slot_safe_wal_bytes", "safe_wal_size of the slot (absent when unlimited).", nil, nil)
	descSlotActive       = prometheus.NewDesc("cdcd_source_slot_active", "1 when the slot is in use.", nil, nil)
	descWALStatus        = prometheus.NewDesc("cdcd_source_slot_wal_status", "1 for the slot's current wal_status.", []string{"wal_status"}, nil)
	descGuard            = prometheus.NewDesc("cdcd_wal_guard_level", "WAL-retention guard: 0 ok, 1 warn, 2 alert, 3 lost.", nil, nil)
	descTrailBytes       = prometheus.NewDesc("cdcd_trail_bytes", "Bytes of trail segments on disk.", nil, nil)
	descTrailSegments    = prometheus.NewDesc("cdcd_trail_segments", "Trail segments on disk.", nil, nil)
	descSinkLagBytes     = prometheus.NewDesc("cdcd_sink_lag_bytes", "Source WAL position minus the sink's position.", []string{"sink"}, nil)
	descSinkLagSec       = prometheus.NewDesc("cdcd_sink_lag_seconds", "How long ago the source's WAL passed the sink's position.", []string{"sink"}, nil)
	descSinkLagTx        = prometheus.NewDesc("cdcd_sink_lag_transactions", "Captured transactions the sink has not applied.", []string{"sink"}, nil)
	descSinkTx           = prometheus.NewDesc("cdcd_sink_transactions_total", "Transactions applied by this process.", []string{"sink"}, nil)
	descSinkRows         = prometheus.NewDesc("cdcd_sink_rows_total", "Row changes applied by this process.", []string{"sink"}, nil)
	descSinkRetries      = prometheus.NewDesc("cdcd_sink_retries_total", "Retries after retriable sink errors.", []string{"sink"}, nil)
	descSinkStopped      = prometheus.NewDesc("cdcd_sink_stopped", "1 when the sink stopped with a terminal error.", []string{"sink"}, nil)
	descSinkPos          = prometheus.NewDesc("cdcd_sink_position_lsn", "Source end LSN of the sink's last applied transaction.", []string{"sink"}, nil)
)

func (c *reportCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReady, descCaptureConnected, descCaptureTx, descCaptureChanges, descCaptureReconn, descCaptureForwarded, descCaptureWithdrawn,
		descCaptureFsyncs, descCaptureFsyncSec,
		descCaptureLagBytes, descCaptureLagSec, descCapturePos, descSourceLSN, descRetained, descSafe, descSlotActive, descWALStatus,
		descGuard, descTrailBytes, descTrailSegments, descSinkLagBytes, descSinkLagSec, descSinkLagTx, descSinkTx, descSinkRows,
		descSinkRetries, descSinkStopped, descSinkPos} {
		ch <- d
	}
}

func (c *reportCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.report()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	n := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	g(descReady, b2f(r.Ready))
	g(descCaptureConnected, b2f(r.Capture.Connected))
	n(descCaptureTx, r.Capture.Transactions)
	n(descCaptureChanges, r.Capture.Changes)
	n(descCaptureReconn, r.Capture.Reconnects)
	n(descCaptureForwarded, r.Capture.Forwarded)
	n(descCaptureWithdrawn, r.Capture.Withdrawn)
	n(descCaptureFsyncs, r.Capture.Fsyncs)
	ch <- prometheus.MustNewConstMetric(descCaptureFsyncSec, prometheus.CounterValue, r.Capture.FsyncSeconds)
	g(descCaptureLagBytes, float64(r.Capture.LagBytes))
	g(descCaptureLagSec, r.Capture.LagSeconds)
	g(descCapturePos, lsnf(r.Capture.Position))
	if r.Slot.ServerLSN != "" {
		g(descSourceLSN, lsnf(r.Slot.ServerLSN))
	}
	if r.Slot.Exists {
		g(descRetained, float64(r.Slot.RetainedWALBytes))
		if r.Slot.SafeWALBytes != nil {
			g(descSafe, float64(*r.Slot.SafeWALBytes))
		}
		g(descSlotActive, b2f(r.Slot.Active))
		if r.Slot.WALStatus != "" {
			g(descWALStatus, 1, r.Slot.WALStatus)
		}
	}
	lv := map[string]float64{"ok": 0, "warn": 1, "alert": 2, "lost": 3}[r.Slot.Guard]
	g(descGuard, lv)
	g(descTrailBytes, float64(r.Trail.Bytes))
	g(descTrailSegments, float64(r.Trail.Segments))
	for _, s := range r.Sinks {
		g(descSinkLagBytes, float64(s.LagBytes), s.Name)
		g(descSinkLagSec, s.LagSeconds, s.Name)
		g(descSinkLagTx, float64(s.LagTransactions), s.Name)
		n(descSinkTx, s.Transactions, s.Name)
		n(descSinkRows, s.Rows, s.Name)
		n(descSinkRetries, s.Retries, s.Name)
		g(descSinkStopped, b2f(s.Stopped), s.Name)
		g(descSinkPos, lsnf(s.Position), s.Name)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func lsnf(s string) float64 {
	l, _ := change.ParseLSN(s)
	return float64(l)
}
