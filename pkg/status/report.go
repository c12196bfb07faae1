// Package status describes how far each stage of a cdcd pipeline is: the
// source slot, capture, the trail and every sink. A Report is built live by
// the running daemon (pkg/service, served at /status and turned into
// Prometheus metrics) or, when the daemon is down, from the files it left —
// the trail, its checkpoints and the sinks' stored positions (FromDisk).
//
// Lag is measured against the source's current WAL position: bytes are
// exact (WAL positions are byte offsets); seconds are how long ago the
// source's WAL first passed the stage's position (live) or how old the first
// transaction not yet applied is (from disk).
package status

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is one snapshot of a pipeline's progress. No field ever holds a
// password.
type Report struct {
	// Time is when the report was made.
	Time time.Time `json:"time"`
	// Running reports that the daemon made the report; false means it was
	// read from the trail directory and the sinks' stored positions.
	Running bool `json:"running"`
	// Ready is the daemon's /readyz verdict (only when Running).
	Ready bool `json:"ready,omitempty"`
	// NotReady says why it is not ready.
	NotReady string   `json:"not_ready,omitempty"`
	Slot     Slot     `json:"slot"`
	Capture  Capture  `json:"capture"`
	Trail    Trail    `json:"trail"`
	Sinks    []Sink   `json:"sinks"`
	Warnings []string `json:"warnings,omitempty"`
}

// Slot is the source's replication slot as pg_replication_slots shows it.
type Slot struct {
	Name string `json:"name"`
	// Error is set when the source could not be asked.
	Error  string `json:"error,omitempty"`
	Exists bool   `json:"exists"`
	Active bool   `json:"active"`
	// ServerLSN is the source's current WAL position (replay position on a
	// standby).
	ServerLSN         string `json:"server_lsn,omitempty"`
	ConfirmedFlushLSN string `json:"confirmed_flush_lsn,omitempty"`
	RestartLSN        string `json:"restart_lsn,omitempty"`
	// RetainedWALBytes is the WAL the slot keeps on the source
	// (server position − restart_lsn).
	RetainedWALBytes int64 `json:"retained_wal_bytes"`
	// SafeWALBytes is safe_wal_size: how much more WAL may be written before
	// the slot is in danger of losing WAL; nil when max_slot_wal_keep_size
	// is unlimited.
	SafeWALBytes *int64 `json:"safe_wal_bytes,omitempty"`
	// WALStatus is reserved, extended, unreserved or lost.
	WALStatus string `json:"wal_status,omitempty"`
	// Invalidated names why the slot was invalidated ("" when it is not):
	// wal_status lost, a standby conflict, or PG17's invalidation_reason.
	Invalidated string `json:"invalidated,omitempty"`
	// Guard is the WAL-retention guard's level: ok, warn, alert or lost
	// (only when Running).
	Guard string `json:"guard,omitempty"`
}

// Capture is the extract stage.
type Capture struct {
	// Connected reports that capture is streaming (only when Running).
	Connected bool `json:"connected,omitempty"`
	// Position is the highest source position the trail (or the ack
	// checkpoint, for idle periods) holds durably.
	Position string `json:"position"`
	// Acked is the flush position last sent to the source (only when Running).
	Acked      string  `json:"acked,omitempty"`
	LagBytes   int64   `json:"lag_bytes"`
	LagSeconds float64 `json:"lag_seconds"`
	// Transactions, Changes and Reconnects count this process's work
	// (only when Running).
	Transactions uint64 `json:"transactions,omitempty"`
	Changes      uint64 `json:"changes,omitempty"`
	Reconnects   uint64 `json:"reconnects,omitempty"`
	// Fsyncs and FsyncSeconds count the trail's group commits and the time
	// they took (only when Running).
	Fsyncs       uint64  `json:"fsyncs,omitempty"`
	FsyncSeconds float64 `json:"fsync_seconds,omitempty"`
	// Forwarded and Withdrawn count streamed transactions written to the
	// trail before their commit, and those taken back (only when Running).
	Forwarded uint64 `json:"forwarded,omitempty"`
	Withdrawn uint64 `json:"withdrawn,omitempty"`
}

// Trail is the local trail directory.
type Trail struct {
	Dir      string `json:"dir"`
	Segments int    `json:"segments"`
	Bytes    int64  `json:"bytes"`
	// FirstSeq is the first record still on disk; NextSeq the next to write.
	FirstSeq uint64 `json:"first_seq"`
	NextSeq  uint64 `json:"next_seq,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Sink is one apply worker.
type Sink struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"`
	// Seq is the trail sequence number of the last record applied.
	Seq uint64 `json:"seq"`
	// Position is the source end LSN of the last transaction applied.
	Position   string  `json:"position"`
	LagBytes   int64   `json:"lag_bytes"`
	LagSeconds float64 `json:"lag_seconds"`
	// LagTransactions counts captured transactions not yet applied; -1 when
	// unknown. Live, it counts only transactions captured by this process
	// (a lower bound just after a restart).
	LagTransactions int64  `json:"lag_transactions"`
	Transactions    uint64 `json:"transactions,omitempty"`
	Rows            uint64 `json:"rows,omitempty"`
	Retries         uint64 `json:"retries,omitempty"`
	LastError       string `json:"last_error,omitempty"`
	Stopped         bool   `json:"stopped,omitempty"`
	// Snapshot is the sink's initial copy, when one is configured (only
	// when Running).
	Snapshot *Snapshot `json:"snapshot,omitempty"`
}

// Snapshot is a sink's snapshot progress.
type Snapshot struct {
	Mode     string `json:"mode"`
	ID       string `json:"id,omitempty"`
	Running  bool   `json:"running"`
	Complete bool   `json:"complete"`
	// TablesDone of Tables are fully loaded; Rows of about RowsEstimate
	// were copied by this process.
	TablesDone   int   `json:"tables_done"`
	Tables       int   `json:"tables"`
	Rows         int64 `json:"rows"`
	RowsEstimate int64 `json:"rows_estimate"`
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes r as a table for people.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	if r.Running {
		state := "ready"
		if !r.Ready {
			state = "NOT READY: " + r.NotReady
		}
		fmt.Fprintf(&b, "cdcd is running (%s) — %s\n\n", state, r.Time.Format(time.RFC3339))
	} else {
		fmt.Fprintf(&b, "cdcd is not running: positions read from %s and the sinks' checkpoints — %s\n\n", r.Trail.Dir, r.Time.Format(time.RFC3339))
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tPOSITION\tLAG\tDETAIL")
	s := r.Slot
	if s.Error != "" {
		fmt.Fprintf(tw, "source slot %s\t?\t\t%s\n", s.Name, s.Error)
	} else if !s.Exists {
		fmt.Fprintf(tw, "source slot %s\t-\t\tdoes not exist\n", s.Name)
	} else {
		d := fmt.Sprintf("server at %s, retains %s of WAL, wal_status=%s", s.ServerLSN, Bytes(s.RetainedWALBytes), s.WALStatus)
		if s.SafeWALBytes != nil {
			d += ", safe_wal_size=" + Bytes(*s.SafeWALBytes)
		}
		if s.Active {
			d += ", active"
		}
		if s.Guard != "" && s.Guard != "ok" {
			d += ", guard=" + strings.ToUpper(s.Guard)
		}
		if s.Invalidated != "" {
			d += ", INVALIDATED: " + s.Invalidated
		}
		fmt.Fprintf(tw, "source slot %s\t%s\t\t%s\n", s.Name, s.ConfirmedFlushLSN, d)
	}
	c := r.Capture
	d := ""
	if r.Running {
		d = fmt.Sprintf("%d tx, %d changes, %d reconnects", c.Transactions, c.Changes, c.Reconnects)
		if !c.Connected {
			d += ", NOT STREAMING"
		}
	}
	fmt.Fprintf(tw, "capture\t%s\t%s\t%s\n", c.Position, lag(c.LagBytes, c.LagSeconds), d)
	t := r.Trail
	d = fmt.Sprintf("%d segments, %s, records %d…", t.Segments, Bytes(t.Bytes), t.FirstSeq)
	if t.NextSeq > 0 {
		d += fmt.Sprint(t.NextSeq - 1)
	}
	if t.Error != "" {
		d += ", ERROR: " + t.Error
	}
	fmt.Fprintf(tw, "trail\t%s\t\t%s\n", t.Dir, d)
	for _, k := range r.Sinks {
		var parts []string
		if k.LagTransactions >= 0 {
			parts = append(parts, fmt.Sprintf("%d tx behind", k.LagTransactions))
		}
		parts = append(parts, fmt.Sprintf("seq %d", k.Seq))
		if r.Running {
			parts = append(parts, fmt.Sprintf("%d tx, %d rows applied, %d retries", k.Transactions, k.Rows, k.Retries))
		}
		if p := k.Snapshot; p != nil && (p.Running || !p.Complete) {
			parts = append(parts, fmt.Sprintf("snapshot %d/%d tables, %d of ~%d rows", p.TablesDone, p.Tables, p.Rows, p.RowsEstimate))
		}
		if k.Stopped {
			parts = append(parts, "STOPPED")
		}
		if k.LastError != "" {
			parts = append(parts, "last error: "+k.LastError)
		}
		fmt.Fprintf(tw, "sink %s\t%s\t%s\t%s\n", k.Name, k.Position, lag(k.LagBytes, k.LagSeconds), strings.Join(parts, ", "))
	}
	tw.Flush()
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func lag(bytes int64, seconds float64) string {
	return fmt.Sprintf("%s / %s", Bytes(bytes), (time.Duration(seconds * float64(time.Second))).Round(10*time.Millisecond))
}

// Bytes formats n with a binary unit.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f, u := float64(n), 0
	for ; (f >= unit || f <= -unit) && u < 5; u++ {
		f /= unit
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTPE"[u-1])
}
