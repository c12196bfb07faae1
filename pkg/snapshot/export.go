package snapshot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/dsn"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
)

// Exported is a snapshot exported for a copy, by default by a temporary
// logical slot (Config.Export replaces the slot for other sources). It
// stays importable only until Close (a slot's: while its replication
// connection is idle): close it once every worker has imported it (SET
// TRANSACTION SNAPSHOT).
//
// Why this is consistent with the stream: a slot's exported snapshot sees
// exactly the transactions whose commit record ends at or before the slot's
// consistent point, and decoding from that point delivers exactly the
// others. The temporary slot is created after the pipeline's slot exists,
// whose stream (held in the trail) therefore covers everything past this
// consistent point; the stream for the copied tables drops transactions
// that committed before it (mapping.Wrap's skip), so nothing is missed or
// applied twice. PostgreSQL 16+ standbys export slot snapshots too
// (verified on 17), so this works unchanged there.
type Exported struct {
	// Name is the snapshot's identifier for SET TRANSACTION SNAPSHOT.
	Name string
	// LSN is the stream position the snapshot is consistent with: it sees
	// exactly the transactions ending at or before it.
	LSN change.LSN
	// Release ends the export (nil: nothing to end).
	Release func()
}

// Close releases the export once; the snapshot is no longer importable.
func (e *Exported) Close() {
	if e.Release != nil {
		e.Release()
		e.Release = nil
	}
}

// exportSnapshot creates a temporary slot exporting its snapshot.
func exportSnapshot(ctx context.Context, cfg postgres.Config, standby bool) (*Exported, error) {
	pc, err := pgconn.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("parse source.dsn %s: %w", dsn.Redact(cfg.DSN), dsn.RedactError(err, dsn.Password(cfg.DSN)))
	}
	pc.RuntimeParams["replication"] = "database"
	pc.RuntimeParams["application_name"] = "cdcd-snapshot"
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to source for the snapshot: %w", dsn.RedactError(err, pc.Password))
	}
	stop := func() {}
	if standby && cfg.PrimaryDSN != "" {
		// On a standby, slot creation waits for a running-xacts record.
		stop = logStandbySnapshots(ctx, cfg.PrimaryDSN)
	}
	name := fmt.Sprintf("%s_snap_%d", cfg.Slot, rand.Uint32()%1000000)
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, name, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Temporary: true, Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT",
	})
	stop()
	if err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("create temporary slot %s exporting the snapshot: %w", name, err)
	}
	lsn, err := change.ParseLSN(res.ConsistentPoint)
	if err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return &Exported{Name: res.SnapshotName, LSN: lsn, Release: func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(ctx) // the temporary slot goes with it
	}}, nil
}

func logStandbySnapshots(ctx context.Context, dsn string) func() {
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(300 * time.Millisecond)
		defer t.Stop()
		for {
			if c, err := pgx.Connect(hctx, dsn); err == nil {
				_, _ = c.Exec(hctx, "SELECT pg_log_standby_snapshot()")
				c.Close(context.Background())
			}
			select {
			case <-hctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// waitSlot waits until the pipeline's slot exists (capture creates it) and
// returns its confirmed_flush_lsn.
func waitSlot(ctx context.Context, conn *pgx.Conn, slot string, log func()) (change.LSN, error) {
	logged := false
	for {
		var lsn *string
		err := conn.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&lsn)
		if err == nil && lsn != nil {
			return change.ParseLSN(*lsn)
		}
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("look up slot %s: %w", slot, err)
		}
		if !logged {
			log()
			logged = true
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sourceReadBytes is the read buffer of a copy worker's source connection.
const sourceReadBytes = 256 << 10

// importSnapshot opens a source connection in a REPEATABLE READ, READ ONLY
// transaction on the exported snapshot.
func importSnapshot(ctx context.Context, sourceDSN, name string) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(sourceDSN)
	if err != nil {
		return nil, fmt.Errorf("parse source.dsn %s: %w", dsn.Redact(sourceDSN), dsn.RedactError(err, dsn.Password(sourceDSN)))
	}
	cc.RuntimeParams["application_name"] = "cdcd-snapshot"
	// COPY TO sends a message per row, and the protocol reader fills an
	// 8 KiB buffer: a read(2) every few dozen rows, a large part of the
	// process's CPU time. Read from the socket in large blocks instead.
	// (The reader's buffer is then not all in the Frontend's: SyncConn,
	// which this connection never calls, could not see it.)
	cc.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, sourceReadBytes), w)
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect to source for the snapshot: %w", dsn.RedactError(err, cc.Password))
	}
	for _, q := range []string{
		"BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
		"SET TRANSACTION SNAPSHOT '" + name + "'",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			conn.Close(context.Background())
			return nil, fmt.Errorf("import snapshot %s: %w", name, err)
		}
	}
	return conn, nil
}
