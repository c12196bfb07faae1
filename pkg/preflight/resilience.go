package preflight

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/dsn"
)

// resilience checks what keeps a pgoutput pipeline going through a
// promotion, large transactions and a lost trail: failover slots and the
// standby settings they need (PostgreSQL 17), streaming of in-progress
// transactions, and the acknowledgement mode.
func (c *checker) resilience(ctx context.Context, q func(string, ...any) pgx.Row, version int, standby bool, slotFailover *bool) {
	src := c.cfg.Source
	switch {
	case src.Streaming == "off":
		c.add("source.streaming", Pass, "streaming of in-progress transactions is off (source.streaming: off): large transactions are spilled to the source's disk until they commit", "")
	case version >= 140000:
		c.add("source.streaming", Pass, "large transactions are streamed while they run (protocol 2) and spooled beside the trail until they commit", "")
	}
	if c.cfg.AckApplied {
		c.add("capture.ack", Pass, "capture.ack is applied: the slot is acknowledged only up to what every sink has applied, so losing the trail loses nothing; the source keeps WAL while any sink is behind or stopped (watch wal_guard and max_slot_wal_keep_size)", "")
	} else {
		c.add("capture.ack", Pass, "capture.ack is durable: the slot is acknowledged once the trail holds changes durably; a lost trail directory loses what the sinks had not applied (capture.ack: applied trades WAL retention on the source for that)", "")
	}
	if standby || version < 170000 || src.Failover == "off" {
		if !standby && version >= 100000 && version < 170000 {
			c.add("source.failover", Warn, fmt.Sprintf("PostgreSQL %d has no failover slots: after a promotion the new primary has no slot and cdcd cannot continue", version/10000),
				"upgrade to PostgreSQL 17, or re-create the slot on the new primary and re-synchronise the targets after a failover")
		}
		return
	}
	if slotFailover != nil && !*slotFailover {
		c.add("source.failover", Pass, fmt.Sprintf("slot %s is not a failover slot yet: cdcd turns it on at start (ALTER_REPLICATION_SLOT)", src.Slot), "")
	} else {
		c.add("source.failover", Pass, fmt.Sprintf("slot %s is (or will be created as) a failover slot", src.Slot), "")
	}
	var syncSlots string
	if err := q(`SELECT current_setting('synchronized_standby_slots')`).Scan(&syncSlots); err != nil {
		c.add("source.failover.synchronized_standby_slots", Fail, "cannot read synchronized_standby_slots: "+err.Error(), "check the connection")
		return
	}
	if syncSlots == "" {
		c.add("source.failover.synchronized_standby_slots", Warn, "synchronized_standby_slots is empty: cdcd may receive changes a standby has not, and after promoting that standby cdcd stops (its trail is past the fork point)",
			"ALTER SYSTEM SET synchronized_standby_slots = '<the standby's physical slot>'; SELECT pg_reload_conf()")
	} else {
		c.add("source.failover.synchronized_standby_slots", Pass, "the primary sends cdcd only what standby slot(s) "+syncSlots+" have received", "")
	}
	c.standbyHosts(ctx)
}

// standbyHosts checks every other host source.dsn lists: each should be a
// standby that synchronizes cdcd's slot.
func (c *checker) standbyHosts(ctx context.Context) {
	src := c.cfg.Source
	cfg, err := pgx.ParseConfig(src.DSN)
	if err != nil {
		return // source.connect reported it
	}
	if len(cfg.Fallbacks) == 0 {
		c.add("source.failover.hosts", Warn, "source.dsn lists one host: after a promotion cdcd cannot find the new primary",
			"list the standby too, with target_session_attrs=read-write: postgres://user@primary,standby/db?target_session_attrs=read-write")
		return
	}
	if cfg.ValidateConnect == nil {
		c.add("source.failover.hosts", Warn, "source.dsn lists several hosts without target_session_attrs=read-write: cdcd could connect to a standby",
			"add target_session_attrs=read-write to source.dsn")
	}
	seen := map[string]bool{fmt.Sprintf("%s:%d", cfg.Host, cfg.Port): true}
	for _, fb := range cfg.Fallbacks {
		addr := fmt.Sprintf("%s:%d", fb.Host, fb.Port)
		if seen[addr] {
			continue
		}
		seen[addr] = true
		one := cfg.Copy()
		one.Host, one.Port, one.TLSConfig, one.Fallbacks, one.ValidateConnect = fb.Host, fb.Port, fb.TLSConfig, nil, nil
		one.RuntimeParams["application_name"] = "cdcd check"
		cctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		conn, err := pgx.ConnectConfig(cctx, one)
		cancel()
		check := "source.failover.standby[" + addr + "]"
		if err != nil {
			c.add(check, Warn, fmt.Sprintf("cannot connect to %s: %v", addr, dsn.RedactError(err, cfg.Password)), "check that the standby runs and admits this host and user")
			continue
		}
		c.standbySync(ctx, check, conn)
		conn.Close(context.WithoutCancel(ctx))
	}
}

// standbySync checks one standby's slot synchronization settings.
func (c *checker) standbySync(ctx context.Context, check string, conn *pgx.Conn) {
	var inRecovery bool
	var sync, feedback, slotName, conninfo string
	var synced *bool
	err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery(), current_setting('sync_replication_slots'), current_setting('hot_standby_feedback'),
		current_setting('primary_slot_name'), current_setting('primary_conninfo'),
		(SELECT synced AND NOT temporary FROM pg_replication_slots WHERE slot_name = $1)`, c.cfg.Source.Slot).
		Scan(&inRecovery, &sync, &feedback, &slotName, &conninfo, &synced)
	if err != nil {
		c.add(check, Warn, "cannot read its settings: "+err.Error(), "check the connection (the standby must be PostgreSQL 17)")
		return
	}
	var missing []string
	var remedies []string
	if !inRecovery {
		c.add(check, Warn, "is not a standby (not in recovery)", "list only the primary and its standbys in source.dsn")
		return
	}
	if sync != "on" {
		missing = append(missing, "sync_replication_slots is off")
		remedies = append(remedies, "ALTER SYSTEM SET sync_replication_slots = on")
	}
	if feedback != "on" {
		missing = append(missing, "hot_standby_feedback is off")
		remedies = append(remedies, "ALTER SYSTEM SET hot_standby_feedback = on")
	}
	if slotName == "" {
		missing = append(missing, "primary_slot_name is empty")
		remedies = append(remedies, "create a physical slot on the primary and set primary_slot_name")
	}
	if !strings.Contains(conninfo, "dbname") {
		missing = append(missing, "primary_conninfo names no dbname")
		remedies = append(remedies, "add dbname=<any database> to primary_conninfo")
	}
	if len(missing) > 0 {
		c.add(check, Fail, "cannot keep cdcd's failover slot: "+strings.Join(missing, ", "), strings.Join(remedies, "; ")+"; then SELECT pg_reload_conf() on the standby")
		return
	}
	if synced == nil || !*synced {
		c.add(check, Warn, fmt.Sprintf("settings are right but slot %s is not synchronized (yet)", c.cfg.Source.Slot),
			"start cdcd (it makes the slot a failover slot) and wait for the standby's slot sync worker; pg_log_standby_snapshot() on the primary speeds it up")
		return
	}
	c.add(check, Pass, fmt.Sprintf("standby synchronizes slot %s (sync_replication_slots, hot_standby_feedback, primary_slot_name %s)", c.cfg.Source.Slot, slotName), "")
}
