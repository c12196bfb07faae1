package cutover

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// preChecks refuses to fence a source that is not ready: a sink too far
// behind, a long transaction or DDL in flight, a sequence missing on a
// target, a target that cannot take the rollback slot.
func (c *cutover) preChecks(ctx context.Context) (string, error) {
	if err := c.src.QueryRow(ctx, "SELECT current_database()").Scan(&c.db); err != nil {
		return "", err
	}
	var problems []string
	var at string
	if err := c.src.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&at); err != nil {
		return "", err
	}
	now := parseLSN(at)
	var lags []string
	for _, t := range c.cfg.Targets {
		pos, err := checkpoint(ctx, t)
		if err != nil {
			return "", err
		}
		lag := int64(0)
		if now > pos {
			lag = int64(now - pos)
		}
		lags = append(lags, fmt.Sprintf("%s %d bytes behind", t.Name, lag))
		if lag > c.cfg.MaxLagBytes {
			problems = append(problems, fmt.Sprintf("sink %s is %d bytes of WAL behind the source (max_lag %d): wait until it catches up", t.Name, lag, c.cfg.MaxLagBytes))
		}
	}
	rows, err := c.src.Query(ctx, `SELECT pid, coalesce(application_name, ''), extract(epoch FROM now() - xact_start)::float8
FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND xact_start < now() - make_interval(secs => $1) ORDER BY xact_start`, c.cfg.MaxTransactionAge.Seconds())
	if err != nil {
		return "", fmt.Errorf("look for long transactions: %w", err)
	}
	for rows.Next() {
		var pid int
		var app string
		var age float64
		if err := rows.Scan(&pid, &app, &age); err != nil {
			rows.Close()
			return "", err
		}
		problems = append(problems, fmt.Sprintf("transaction of pid %d (%q) is %.0fs old (max_transaction_age %s): let it finish or end it", pid, app, age, c.cfg.MaxTransactionAge))
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	rows, err = c.src.Query(ctx, `SELECT l.pid, coalesce(c.relname, l.relation::text) FROM pg_locks l
LEFT JOIN pg_class c ON c.oid = l.relation
WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.granted AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
	if err != nil {
		return "", fmt.Errorf("look for DDL in flight: %w", err)
	}
	for rows.Next() {
		var pid int
		var rel string
		if err := rows.Scan(&pid, &rel); err != nil {
			rows.Close()
			return "", err
		}
		problems = append(problems, fmt.Sprintf("pid %d holds an ACCESS EXCLUSIVE lock on %s (DDL in flight): let it finish", pid, rel))
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	seqs, err := c.sourceSequences(ctx)
	if err != nil {
		return "", err
	}
	for _, t := range c.cfg.Targets {
		err := onTarget(ctx, t, func(conn *pgx.Conn) error {
			for _, s := range seqs {
				var ok bool
				if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s.name).Scan(&ok); err != nil {
					return err
				}
				if !ok {
					problems = append(problems, fmt.Sprintf("sequence %s is missing on target %s: create it there", s.name, t.Name))
				}
			}
			if c.cfg.RollbackSlot != "" {
				var level string
				if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
					return err
				}
				if level != "logical" {
					problems = append(problems, fmt.Sprintf("target %s has wal_level=%s: rollback replication needs logical", t.Name, level))
				}
			}
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	if len(problems) > 0 {
		return "", errors.New(strings.Join(problems, "; "))
	}
	return fmt.Sprintf("%s; %d sequences; no long transaction, no DDL", strings.Join(lags, ", "), len(seqs)), nil
}

// checkpoint reads the sink's position from its target's checkpoint table.
func checkpoint(ctx context.Context, t Target) (change.LSN, error) {
	var s string
	err := onTarget(ctx, t, func(conn *pgx.Conn) error {
		schema, table, ok := strings.Cut(t.CheckpointTable, ".")
		name := pgx.Identifier{schema, table}.Sanitize()
		if !ok {
			name = pgx.Identifier{schema}.Sanitize()
		}
		return conn.QueryRow(ctx, "SELECT end_lsn::text FROM "+name+" WHERE name = $1", t.Name).Scan(&s)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("sink %s has no position in %s on its target: is cdcd running and has it applied anything?", t.Name, t.CheckpointTable)
	}
	if err != nil {
		return 0, fmt.Errorf("read the position of sink %s: %w", t.Name, err)
	}
	return change.ParseLSN(s)
}

func onTarget(ctx context.Context, t Target, f func(*pgx.Conn) error) error {
	conn, err := connect(ctx, t.DSN, "target "+t.Name)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return f(conn)
}

// fence makes the source read-only for everything but cdcd: new sessions
// start read-only (the database's default), and every session that started
// before that took effect is ended. A session started after the ALTER
// committed reads the new default (backend_start is set before a backend
// reads its settings), so ending the older ones leaves no writer.
func (c *cutover) fence(ctx context.Context) (string, error) {
	if c.cfg.FenceCommand != "" {
		return run(ctx, c.cfg.FenceCommand, c.cfg.HookTimeout)
	}
	var prior *string
	err := c.src.QueryRow(ctx, `SELECT split_part(s, '=', 2) FROM pg_catalog.pg_db_role_setting d, unnest(d.setconfig) s
WHERE d.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) AND d.setrole = 0
  AND s LIKE 'default\_transaction\_read\_only=%'`).Scan(&prior)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("read the database's settings: %w", err)
	}
	c.prior = prior
	db := pgx.Identifier{c.db}.Sanitize()
	if _, err := c.src.Exec(ctx, "ALTER DATABASE "+db+" SET default_transaction_read_only = on"); err != nil {
		return "", fmt.Errorf("ALTER DATABASE %s SET default_transaction_read_only (needs ownership of the database): %w", c.db, err)
	}
	var since time.Time
	if err := c.src.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&since); err != nil {
		return "", err
	}
	waited, err := c.waitOut(ctx, since)
	if err != nil {
		return "", err
	}
	ended := 0
	deadline := time.Now().Add(10 * time.Second)
	for pass := 0; ; pass++ {
		var n int
		err := c.src.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND coalesce(application_name, '') NOT LIKE 'cdcd%' AND backend_start <= $1`, since).Scan(&n)
		if err != nil {
			return "", fmt.Errorf("end the sessions that could write (needs superuser or pg_signal_backend): %w", err)
		}
		if pass == 0 {
			ended = n
		}
		if n == 0 && pass > 0 {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("sessions of database %s do not end", c.db)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Sprintf("database %s read-only for new sessions; %s%d sessions ended", c.db, waited, ended), nil
}

// waitOut gives the transactions in progress in sessions older than the
// fence up to FenceGrace to finish (commit or roll back) before those
// sessions are ended: an in-flight transaction then commits on blue — and
// reaches green through the drain — instead of failing.
func (c *cutover) waitOut(ctx context.Context, since time.Time) (string, error) {
	if c.cfg.FenceGrace <= 0 {
		return "", nil
	}
	start := time.Now()
	for {
		var open int
		err := c.src.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND coalesce(application_name, '') NOT LIKE 'cdcd%' AND backend_start <= $1 AND xact_start IS NOT NULL`, since).Scan(&open)
		if err != nil {
			return "", fmt.Errorf("look for transactions in progress: %w", err)
		}
		d := time.Since(start).Round(time.Millisecond)
		if open == 0 {
			return fmt.Sprintf("transactions in progress finished in %s; ", d), nil
		}
		if d >= c.cfg.FenceGrace {
			return fmt.Sprintf("%d transactions still in progress after %s (fence_grace) are cut off; ", open, c.cfg.FenceGrace), nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// unfence undoes fence: the database's setting as it was before.
func (c *cutover) unfence(ctx context.Context) (string, error) {
	if c.cfg.FenceCommand != "" {
		if c.cfg.UnfenceCommand == "" {
			return "", errors.New("no unfence command (cutover.unfence_command): undo the fence by hand")
		}
		return run(ctx, c.cfg.UnfenceCommand, c.cfg.HookTimeout)
	}
	db := pgx.Identifier{c.db}.Sanitize()
	sql := "ALTER DATABASE " + db + " RESET default_transaction_read_only"
	if c.prior != nil {
		sql = "ALTER DATABASE " + db + " SET default_transaction_read_only = '" + strings.ReplaceAll(*c.prior, "'", "''") + "'"
	}
	if _, err := c.src.Exec(ctx, sql); err != nil {
		return "", err
	}
	return "database " + c.db + " writable again", nil
}

// drain commits a marker on the source and waits until every sink's
// checkpoint is past it: every transaction committed before the fence is
// on every target.
func (c *cutover) drain(ctx context.Context) (string, error) {
	var s string
	if err := c.src.QueryRow(ctx, "SELECT pg_logical_emit_message(true, '"+MarkerPrefix+"', 'drain')::text").Scan(&s); err != nil {
		return "", fmt.Errorf("commit the marker: %w", err)
	}
	marker := parseLSN(s)
	c.rep.MarkerLSN = marker.String()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DrainTimeout)
	defer cancel()
	var done []string
	for _, t := range c.cfg.Targets {
		conn, err := connect(ctx, t.DSN, "target "+t.Name)
		if err != nil {
			return "", err
		}
		schema, table, _ := strings.Cut(t.CheckpointTable, ".")
		q := "SELECT end_lsn::text FROM " + pgx.Identifier{schema, table}.Sanitize() + " WHERE name = $1"
		for {
			var end string
			err := conn.QueryRow(ctx, q, t.Name).Scan(&end)
			if err == nil && parseLSN(end) > marker {
				done = append(done, fmt.Sprintf("%s at %s", t.Name, end))
				break
			}
			if ctx.Err() != nil {
				conn.Close(context.Background())
				at := end
				if err != nil && !errors.Is(err, ctx.Err()) {
					at = err.Error()
				}
				return "", fmt.Errorf("sink %s did not apply the marker %s within %s (at %s): is cdcd running? see cdcd status", t.Name, marker, c.cfg.DrainTimeout, at)
			}
			time.Sleep(2 * time.Millisecond)
		}
		conn.Close(context.Background())
	}
	return fmt.Sprintf("marker %s applied: %s", marker, strings.Join(done, ", ")), nil
}

type sequence struct {
	name      string // quoted, qualified
	last      *int64
	increment int64
}

func (c *cutover) sourceSequences(ctx context.Context) ([]sequence, error) {
	rows, err := c.src.Query(ctx, `SELECT schemaname, sequencename, last_value, increment_by FROM pg_catalog.pg_sequences
WHERE schemaname <> 'cdcd' ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("list the source's sequences: %w", err)
	}
	defer rows.Close()
	var out []sequence
	for rows.Next() {
		var schema, name string
		var s sequence
		if err := rows.Scan(&schema, &name, &s.last, &s.increment); err != nil {
			return nil, err
		}
		s.name = pgx.Identifier{schema, name}.Sanitize()
		out = append(out, s)
	}
	return out, rows.Err()
}

// sequences sets every target sequence to the source's value plus the gap,
// so green issues no value blue has issued.
func (c *cutover) sequences(ctx context.Context) (string, error) {
	seqs, err := c.sourceSequences(ctx)
	if err != nil {
		return "", err
	}
	set := 0
	for _, t := range c.cfg.Targets {
		err := onTarget(ctx, t, func(conn *pgx.Conn) error {
			b := &pgx.Batch{}
			for _, s := range seqs {
				if s.last == nil {
					continue // never used on the source
				}
				b.Queue("SELECT setval($1::regclass, $2, true)", s.name, *s.last+c.cfg.SequenceGap*s.increment)
			}
			set = b.Len()
			return conn.SendBatch(ctx, b).Close()
		})
		if err != nil {
			return "", fmt.Errorf("target %s: %w", t.Name, err)
		}
	}
	c.rep.Sequences = set
	return fmt.Sprintf("%d sequences set to the source's value + %d", set, c.cfg.SequenceGap), nil
}

// rollbackSlots creates, on each target, a publication of every table and
// a logical slot: a pipeline green → blue started from that slot receives
// everything green commits after the switch.
func (c *cutover) rollbackSlots(ctx context.Context) (string, error) {
	name := c.cfg.RollbackSlot
	for _, t := range c.cfg.Targets {
		err := onTarget(ctx, t, func(conn *pgx.Conn) error {
			var pub, slot bool
			if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_publication WHERE pubname = $1),
				EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = $1)`, name).Scan(&pub, &slot); err != nil {
				return err
			}
			if !pub {
				if _, err := conn.Exec(ctx, "CREATE PUBLICATION "+pgx.Identifier{name}.Sanitize()+" FOR ALL TABLES"); err != nil {
					return fmt.Errorf("create publication %s: %w", name, err)
				}
			}
			if !slot {
				if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", name); err != nil {
					return fmt.Errorf("create slot %s: %w", name, err)
				}
				c.slots = append(c.slots, t)
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("target %s: %w", t.Name, err)
		}
	}
	return "publication and slot " + name + " on every target", nil
}

// unfenceTargets resets default_transaction_read_only on each target's
// database (blue, fenced by the cutover that left it).
func (c *cutover) unfenceTargets(ctx context.Context) (string, error) {
	var names []string
	for _, t := range c.cfg.Targets {
		err := onTarget(ctx, t, func(conn *pgx.Conn) error {
			var db string
			if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
				return err
			}
			_, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" RESET default_transaction_read_only")
			names = append(names, db)
			return err
		})
		if err != nil {
			return "", fmt.Errorf("target %s: %w", t.Name, err)
		}
	}
	return "writable again: " + strings.Join(names, ", "), nil
}

// dropSlots drops the rollback slots this run created (after a failure
// before the switch).
func (c *cutover) dropSlots(ctx context.Context) (string, error) {
	var errs []error
	for _, t := range c.slots {
		err := onTarget(ctx, t, func(conn *pgx.Conn) error {
			_, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", c.cfg.RollbackSlot)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("target %s: drop slot %s: %w", t.Name, c.cfg.RollbackSlot, err))
		}
	}
	c.slots = nil
	return "slot " + c.cfg.RollbackSlot + " dropped", errors.Join(errs...)
}
