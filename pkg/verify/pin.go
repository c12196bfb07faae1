package verify

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/dsn"
)

// pinStatic exports a snapshot of the source and of each target as they
// are.
func (v *run) pinStatic(ctx context.Context) (change.LSN, error) {
	var err error
	if v.srcSnap, err = exportSnapshot(ctx, v.src, ""); err != nil {
		return 0, fmt.Errorf("source: %w", err)
	}
	var s string
	if err := v.src.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		return 0, fmt.Errorf("source: read the WAL position: %w", err)
	}
	for i, t := range v.cfg.Targets {
		if t.Snapshot != "" {
			v.dstSnap[i] = t.Snapshot
			continue
		}
		if v.dstSnap[i], err = exportSnapshot(ctx, v.dst[i], ""); err != nil {
			return 0, fmt.Errorf("target %s: %w", t.Name, err)
		}
	}
	return change.ParseLSN(s)
}

// pinHeld holds every sink at the source snapshot's position and pins
// each target there (see the package documentation for why it is exact).
func (v *run) pinHeld(ctx context.Context) (change.LSN, []change.LSN, error) {
	v.d = daemon{base: v.cfg.Daemon, c: &http.Client{Timeout: 30 * time.Second}}
	names := make([]string, len(v.cfg.Targets))
	for i, t := range v.cfg.Targets {
		names[i] = t.Name
	}
	if err := v.d.ready(ctx, names); err != nil {
		return 0, nil, err
	}
	aux, err := connect(ctx, v.cfg.SourceDSN, "source")
	if err != nil {
		return 0, nil, err
	}
	defer aux.Close(context.WithoutCancel(ctx))
	var s string
	if err := aux.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		return 0, nil, fmt.Errorf("source: read the WAL position: %w", err)
	}
	l0, err := change.ParseLSN(s)
	if err != nil {
		return 0, nil, err
	}
	// 1. Hold every sink at l0 before the snapshot exists.
	for _, t := range v.cfg.Targets {
		if err := v.d.hold(ctx, t.Name, l0, v.cfg.HoldTimeout); err != nil {
			return 0, nil, err
		}
		v.held = append(v.held, t.Name)
	}
	// 2. The source snapshot, at C.
	rep, c, name, err := slotSnapshot(ctx, v.cfg.SourceDSN, v.cfg.Slot)
	if err != nil {
		return 0, nil, err
	}
	// 3. Move the holds to C; a marker past C makes every sink get there.
	for _, t := range v.cfg.Targets {
		if err := v.d.hold(ctx, t.Name, c, v.cfg.HoldTimeout); err != nil {
			rep.Close(context.Background())
			return 0, nil, err
		}
	}
	v.srcSnap, err = exportSnapshot(ctx, v.src, name)
	rep.Close(context.Background()) // the temporary slot goes with it
	if err != nil {
		return 0, nil, fmt.Errorf("source: %w", err)
	}
	if _, err := aux.Exec(ctx, "SELECT pg_logical_emit_message(true, '"+MarkerPrefix+"', '')"); err != nil {
		return 0, nil, fmt.Errorf("source: commit the verify marker (pg_logical_emit_message needs EXECUTE): %w", err)
	}
	// 4. Pin each target once its sink stands at C.
	wctx, cancel := context.WithTimeout(ctx, v.cfg.HoldTimeout)
	defer cancel()
	positions := make([]change.LSN, len(v.cfg.Targets))
	for i, t := range v.cfg.Targets {
		if positions[i], err = v.d.waitReached(wctx, t.Name, c); err != nil {
			return 0, nil, err
		}
		if v.dstSnap[i], err = exportSnapshot(ctx, v.dst[i], ""); err != nil {
			return 0, nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
	}
	v.log.Info("verify: both sides pinned", "lsn", c.String(), "mode", "held")
	return c, positions, nil
}

// slotSnapshot creates a temporary logical slot exporting its snapshot; the
// snapshot stays importable while rep is open and idle.
func slotSnapshot(ctx context.Context, conn, slot string) (*pgconn.PgConn, change.LSN, string, error) {
	pc, err := pgconn.ParseConfig(conn)
	if err != nil {
		return nil, 0, "", fmt.Errorf("parse the source's dsn %s: %w", dsn.Redact(conn), dsn.RedactError(err, dsn.Password(conn)))
	}
	pc.RuntimeParams["replication"] = "database"
	pc.RuntimeParams["application_name"] = "cdcd-verify"
	rep, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, 0, "", fmt.Errorf("connect to the source for the snapshot (needs REPLICATION): %w", dsn.RedactError(err, pc.Password))
	}
	name := fmt.Sprintf("%s_verify_%d", slot, rand.Uint32()%1000000)
	r, err := pglogrepl.CreateReplicationSlot(ctx, rep, name, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Temporary: true, Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT",
	})
	if err != nil {
		rep.Close(context.Background())
		return nil, 0, "", fmt.Errorf("create temporary slot %s exporting the snapshot: %w", name, err)
	}
	lsn, err := change.ParseLSN(r.ConsistentPoint)
	if err != nil {
		rep.Close(context.Background())
		return nil, 0, "", err
	}
	return rep, lsn, r.SnapshotName, nil
}
