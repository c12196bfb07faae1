package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/checkpoint"
	"github.com/cdcd-io/cdcd/pkg/dsn"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// DiskConfig says where a stopped daemon left its positions.
type DiskConfig struct {
	// TrailDir is the trail directory. Required.
	TrailDir string
	// SourceDSN is the source's connection string, to read the slot and
	// the server position. Default "": the slot is not read and lag bytes
	// are unknown.
	SourceDSN string
	// Slot is the slot name. Default "cdcd".
	Slot string
	// Sinks are the configured sinks.
	Sinks []DiskSink
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// DiskSink is one sink whose position is to be read.
type DiskSink struct {
	Name, Kind string
	// Position reads a position the sink stores itself (the postgres
	// sink's checkpoint table: see PostgresPosition). Default nil: the
	// sink-<name>.pos file apply keeps in the trail directory.
	Position func(ctx context.Context) (seq uint64, endLSN change.LSN, err error)
}

// FromDisk builds a report from what a stopped daemon left: the trail, its
// capture.ack and sink-<name>.pos checkpoints, the positions sinks store on
// their targets, and the source's slot. It only reads. Errors reading one
// part are reported in that part; the report is always returned.
func FromDisk(ctx context.Context, cfg DiskConfig) *Report {
	if cfg.Slot == "" {
		cfg.Slot = "cdcd"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	now := cfg.Now()
	r := &Report{Time: now, Slot: Slot{Name: cfg.Slot}, Trail: Trail{Dir: cfg.TrailDir}}

	var slot SlotState
	if cfg.SourceDSN != "" {
		slot = readSlot(ctx, cfg.SourceDSN, cfg.Slot)
		r.Slot = slot.Slot
	} else {
		r.Slot.Error = "source not asked"
	}

	segs, err := trail.Segments(cfg.TrailDir)
	if err != nil {
		r.Trail.Error = err.Error()
	}
	for _, s := range segs {
		r.Trail.Bytes += s.Bytes
	}
	r.Trail.Segments = len(segs)
	if len(segs) > 0 {
		r.Trail.FirstSeq = segs[0].FirstSeq
	}

	// Sink positions first: the trail scan starts at the lowest.
	sinks := make([]Sink, len(cfg.Sinks))
	from := uint64(0)
	for i, ds := range cfg.Sinks {
		k := Sink{Name: ds.Name, Kind: ds.Kind, LagTransactions: -1}
		var lsn change.LSN
		var err error
		if ds.Position != nil {
			k.Seq, lsn, err = ds.Position(ctx)
		} else {
			k.Seq, _, err = checkpoint.New(filepath.Join(cfg.TrailDir, "sink-"+ds.Name+".pos")).Load()
		}
		if err != nil {
			k.LastError = "reading its position: " + err.Error()
		}
		k.Position = lsn.String()
		sinks[i] = k
		if i == 0 || k.Seq < from {
			from = k.Seq
		}
	}

	// One pass over the trail from the lowest sink position: the commits
	// not yet applied by each sink, and the trail's last end LSN.
	var commits []commitInfo
	var last change.LSN
	if len(segs) > 0 {
		last = segs[len(segs)-1].PrevEndLSN
		from = max(from, segs[0].FirstSeq)
		commits, r.Trail.NextSeq, err = scanCommits(ctx, cfg.TrailDir, from)
		if err != nil && r.Trail.Error == "" {
			r.Trail.Error = err.Error()
		}
		if n := len(commits); n > 0 {
			last = max(last, commits[n-1].end)
		}
	}
	acked, _, err := checkpoint.New(filepath.Join(cfg.TrailDir, "capture.ack")).Load()
	if err != nil {
		r.Warnings = append(r.Warnings, err.Error())
	}
	capPos := max(last, change.LSN(acked))
	r.Capture.Position = capPos.String()
	if slot.Server > capPos {
		r.Capture.LagBytes = int64(slot.Server - capPos)
	}

	for i := range sinks {
		k := &sinks[i]
		idx := sort.Search(len(commits), func(j int) bool { return commits[j].seq > k.Seq })
		pending := commits[idx:]
		if k.Position == "0/0" && idx > 0 {
			// A checkpoint file holds only the seq: take the LSN from the trail.
			k.Position = commits[idx-1].end.String()
		}
		if k.LastError == "" {
			k.LagTransactions = int64(len(pending))
		}
		pos, _ := change.ParseLSN(k.Position)
		if len(pending) == 0 {
			pos = max(pos, capPos) // caught up with the trail
		} else {
			k.LagSeconds = max(0, now.Sub(pending[0].commitTime).Seconds())
		}
		if slot.Server > pos && pos != 0 {
			k.LagBytes = int64(slot.Server - pos)
		}
		r.Sinks = append(r.Sinks, *k)
	}
	r.Warnings = append(r.Warnings, "cdcd is not running: capture's lag in seconds is unknown; sinks' lag in seconds is the age of their first unapplied transaction")
	return r
}

type commitInfo struct {
	seq        uint64
	end        change.LSN
	commitTime time.Time
}

// scanCommits reads the trail from seq from to its end and returns its
// COMMIT records and the seq following the last record read.
func scanCommits(ctx context.Context, dir string, from uint64) ([]commitInfo, uint64, error) {
	rd, err := trail.NewReader(dir, from, trail.ReaderOptions{})
	if err != nil {
		return nil, 0, err
	}
	defer rd.Close()
	var out []commitInfo
	next := from
	for {
		rec, err := rd.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, next, nil
		}
		if err != nil {
			return out, next, err
		}
		next = rec.Seq + 1
		if rec.Type == trail.RecordCommit && rec.Seq >= from {
			out = append(out, commitInfo{seq: rec.Seq, end: rec.Tx.EndLSN, commitTime: rec.Tx.CommitTime})
		}
	}
}

func readSlot(ctx context.Context, dsn, slot string) SlotState {
	st := SlotState{Slot: Slot{Name: slot}}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := connect(ctx, dsn, "cdcd status")
	if err != nil {
		st.Error = err.Error()
		return st
	}
	defer conn.Close(context.Background())
	st, err = QuerySlot(ctx, conn, slot)
	if err != nil {
		st.Error = err.Error()
	}
	return st
}

// PostgresPosition reads a postgres sink's position from its checkpoint
// table (schema.table or table) on the target. It needs SELECT on that
// table only.
func PostgresPosition(ctx context.Context, dsn, table, name string) (uint64, change.LSN, error) {
	if table == "" {
		table = "cdcd.checkpoint"
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := connect(ctx, dsn, "cdcd status")
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(context.Background())
	var seq int64
	var lsn string
	err = conn.QueryRow(ctx, "SELECT seq, end_lsn::text FROM "+pgx.Identifier(strings.Split(table, ".")).Sanitize()+" WHERE name = $1", name).Scan(&seq, &lsn)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", table, err)
	}
	l, err := change.ParseLSN(lsn)
	return uint64(seq), l, err
}

// connect opens a connection whose errors never carry the password.
func connect(ctx context.Context, d, app string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(d)
	if err != nil {
		return nil, dsn.RedactError(err, dsn.Password(d))
	}
	cfg.RuntimeParams["application_name"] = app
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s@%s:%d/%s: %w", cfg.User, cfg.Host, cfg.Port, cfg.Database, dsn.RedactError(err, cfg.Password))
	}
	return conn, nil
}
