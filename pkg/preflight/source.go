package preflight

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/source/postgres"
	"github.com/cdcd-io/cdcd/pkg/status"
)

// source checks the source and returns the tables its publication covers
// (those it would cover, when it is to be created).
func (c *checker) source(ctx context.Context) []table {
	src := c.cfg.Source
	conn, desc, err := connect(ctx, src.DSN, "cdcd check", c.cfg.Timeout)
	if err != nil {
		c.add("source.connect", Fail, fmt.Sprintf("cannot connect to the source %s: %v", desc, err),
			"check source.dsn (host, port, database, user, password), that the server runs, and that its pg_hba.conf admits this host and user")
		return nil
	}
	defer conn.Close(context.Background())
	c.add("source.connect", Pass, "connected to "+desc, "")
	q := func(sql string, args ...any) pgx.Row { return conn.QueryRow(ctx, sql, args...) }

	var version int
	var standby bool
	var versionText string
	if err := q(`SELECT current_setting('server_version_num')::int, current_setting('server_version'), pg_is_in_recovery()`).Scan(&version, &versionText, &standby); err != nil {
		c.add("source.version", Fail, "cannot read the server version: "+err.Error(), "check the connection")
		return nil
	}
	role := "primary"
	if standby {
		role = "physical standby"
	}
	switch {
	case version < 100000:
		c.add("source.version", Fail, fmt.Sprintf("PostgreSQL %s (%s): pgoutput needs 10 or later", versionText, role), "upgrade the source")
	case standby && version < 160000:
		c.add("source.version", Fail, fmt.Sprintf("PostgreSQL %s (%s): logical decoding on a standby needs PostgreSQL 16 or later", versionText, role),
			"point source.dsn at the primary, or upgrade the standby (and its primary) to 16+")
	default:
		c.add("source.version", Pass, fmt.Sprintf("PostgreSQL %s (%s)", versionText, role), "")
	}
	if standby {
		c.standby(q)
	}

	settings := map[string]string{}
	rows, err := conn.Query(ctx, `SELECT name, setting FROM pg_settings WHERE name = ANY($1)`,
		[]string{"wal_level", "max_replication_slots", "max_wal_senders", "max_slot_wal_keep_size"})
	if err == nil {
		for rows.Next() {
			var n, v string
			if rows.Scan(&n, &v) == nil {
				settings[n] = v
			}
		}
		rows.Close()
		err = rows.Err()
	}
	if err != nil {
		c.add("source.settings", Fail, "cannot read pg_settings: "+err.Error(), "check the connection")
		return nil
	}
	if wl := settings["wal_level"]; wl == "logical" {
		c.add("source.wal_level", Pass, "wal_level is logical", "")
	} else {
		remedy := "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL (RDS/Aurora: set rds.logical_replication = 1 in the parameter group and reboot)"
		if standby {
			remedy = "set wal_level = logical on the primary and on this standby, then restart both"
		}
		c.add("source.wal_level", Fail, "wal_level is "+wl+": logical decoding needs logical", remedy)
	}

	slot, err := status.QuerySlot(ctx, conn, src.Slot)
	if err != nil {
		c.add("source.slot", Fail, err.Error(), "check the connection")
		return nil
	}
	c.headroom(q, settings, slot.Exists)
	super := c.role(q, standby)
	if src.Heartbeat > 0 && !standby {
		var ok bool
		if err := q(`SELECT has_function_privilege('pg_logical_emit_message(boolean,text,text)', 'EXECUTE')`).Scan(&ok); err == nil && !ok {
			c.add("source.heartbeat", Warn, "the role cannot execute pg_logical_emit_message: no heartbeats, so an idle database holds WAL",
				"GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO the role, or set source.heartbeat: off")
		} else if err == nil {
			c.add("source.heartbeat", Pass, "the role may emit heartbeats (pg_logical_emit_message)", "")
		}
	}
	pubExists := c.publication(ctx, q, standby, super)
	c.slot(slot)
	var slotFailover *bool
	if slot.Exists && version >= 170000 {
		var f bool
		if q(`SELECT failover FROM pg_replication_slots WHERE slot_name = $1`, src.Slot).Scan(&f) == nil {
			slotFailover = &f
		}
	}
	c.resilience(ctx, q, version, standby, slotFailover)
	c.keepSize(settings["max_slot_wal_keep_size"])
	return c.tables(ctx, conn, pubExists)
}

// standby checks what decoding on a standby needs.
func (c *checker) standby(q func(string, ...any) pgx.Row) {
	var feedback, slotName string
	if err := q(`SELECT current_setting('hot_standby_feedback'), current_setting('primary_slot_name')`).Scan(&feedback, &slotName); err != nil {
		c.add("source.standby", Fail, "cannot read standby settings: "+err.Error(), "check the connection")
		return
	}
	if feedback != "on" {
		c.add("source.standby.hot_standby_feedback", Fail, "hot_standby_feedback is off: the primary may remove catalog rows decoding needs, and the slot is invalidated",
			"ALTER SYSTEM SET hot_standby_feedback = on on the standby; SELECT pg_reload_conf()")
	} else {
		c.add("source.standby.hot_standby_feedback", Pass, "hot_standby_feedback is on", "")
	}
	if slotName == "" {
		c.add("source.standby.primary_slot", Warn, "the standby streams without a physical slot on its upstream: the primary may remove WAL it still needs, and hot_standby_feedback does not survive reconnects",
			"create a physical slot on the primary (SELECT pg_create_physical_replication_slot('standby')) and set primary_slot_name on the standby")
	} else {
		c.add("source.standby.primary_slot", Pass, "streams through physical slot "+slotName+" on its upstream", "")
	}
	if c.cfg.Source.PrimaryDSN == "" {
		c.add("source.standby.primary_dsn", Warn, "source.primary_dsn is not set: no heartbeats (an idle database holds WAL) and a missing publication cannot be created",
			"set source.primary_dsn to the primary's connection string")
	}
}

// headroom checks max_replication_slots and max_wal_senders.
func (c *checker) headroom(q func(string, ...any) pgx.Row, settings map[string]string, slotExists bool) {
	need := 1
	if slotExists {
		need = 0
	}
	maxSlots, _ := strconv.Atoi(settings["max_replication_slots"])
	var used int
	_ = q(`SELECT count(*) FROM pg_replication_slots`).Scan(&used)
	detail := fmt.Sprintf("%d of max_replication_slots %d used", used, maxSlots)
	switch free := maxSlots - used; {
	case free < need:
		c.add("source.max_replication_slots", Fail, detail+": no slot free for cdcd",
			"raise max_replication_slots (needs a restart) or drop unused slots (SELECT pg_drop_replication_slot(name))")
	case free < need+1:
		c.add("source.max_replication_slots", Warn, detail+": no headroom left for another consumer",
			"raise max_replication_slots (needs a restart)")
	default:
		c.add("source.max_replication_slots", Pass, detail, "")
	}
	maxSenders, _ := strconv.Atoi(settings["max_wal_senders"])
	var senders int
	_ = q(`SELECT count(*) FROM pg_stat_replication`).Scan(&senders)
	detail = fmt.Sprintf("%d of max_wal_senders %d in use", senders, maxSenders)
	switch free := maxSenders - senders; {
	case free < 1:
		c.add("source.max_wal_senders", Fail, detail+": cdcd's replication connection would be refused", "raise max_wal_senders (needs a restart)")
	case free < 2:
		c.add("source.max_wal_senders", Warn, detail+": one sender left; a reconnect overlapping the old session fails", "raise max_wal_senders (needs a restart)")
	default:
		c.add("source.max_wal_senders", Pass, detail, "")
	}
}

// role checks the REPLICATION privilege; it returns whether the role is a
// superuser.
func (c *checker) role(q func(string, ...any) pgx.Row, standby bool) bool {
	var name string
	var super, repl, rds bool
	err := q(`SELECT r.rolname, r.rolsuper, r.rolreplication,
		coalesce((SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = 'rds_replication'), false)
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&name, &super, &repl, &rds)
	if err != nil {
		c.add("source.role", Fail, "cannot read the role's attributes: "+err.Error(), "check the connection")
		return false
	}
	switch {
	case super:
		c.add("source.role", Pass, fmt.Sprintf("role %s is a superuser (a dedicated role with REPLICATION is enough and safer)", name), "")
	case repl || rds:
		c.add("source.role", Pass, fmt.Sprintf("role %s has the REPLICATION privilege", name), "")
	default:
		c.add("source.role", Fail, fmt.Sprintf("role %s lacks the REPLICATION privilege: the replication connection is refused", name),
			fmt.Sprintf("ALTER ROLE %s REPLICATION (RDS/Aurora: GRANT rds_replication TO %s)", ident(name), ident(name)))
	}
	return super
}

// publication checks the publication; it returns whether it exists.
func (c *checker) publication(ctx context.Context, q func(string, ...any) pgx.Row, standby, super bool) bool {
	pub := c.cfg.Source.Publication
	var all bool
	var n int
	err := q(`SELECT p.puballtables, (SELECT count(*) FROM pg_publication_tables t WHERE t.pubname = p.pubname)
		FROM pg_publication p WHERE p.pubname = $1`, pub).Scan(&all, &n)
	if errors.Is(err, pgx.ErrNoRows) {
		if standby && c.cfg.Source.PrimaryDSN != "" && c.onPrimary(ctx, pub) {
			// Created on the primary, not yet replayed here: cdcd waits
			// for the replay when it starts.
			c.add("source.publication", Warn, fmt.Sprintf("publication %s exists on the primary but the standby has not replayed it yet", pub),
				"check the standby's replay (pg_stat_wal_receiver, pg_get_wal_replay_pause_state()); cdcd waits up to 30s for it")
			return false
		}
		switch {
		case !c.cfg.Source.Create:
			c.add("source.publication", Fail, fmt.Sprintf("publication %s does not exist", pub),
				fmt.Sprintf("CREATE PUBLICATION %s FOR ALL TABLES (or FOR TABLE …) on the primary, or set source.create: true", pub))
		case standby && c.cfg.Source.PrimaryDSN == "":
			c.add("source.publication", Fail, fmt.Sprintf("publication %s does not exist and the source is a read-only standby", pub),
				fmt.Sprintf("CREATE PUBLICATION %s FOR ALL TABLES on the primary, or set source.primary_dsn", pub))
		case !super && !standby:
			c.add("source.publication", Fail, fmt.Sprintf("publication %s does not exist, and creating it FOR ALL TABLES needs a superuser", pub),
				fmt.Sprintf("have a superuser run CREATE PUBLICATION %s FOR ALL TABLES (or FOR TABLE …)", pub))
		default:
			c.add("source.publication", Pass, fmt.Sprintf("publication %s does not exist; cdcd will create it FOR ALL TABLES (source.create: true)", pub), "")
		}
		return false
	}
	if err != nil {
		c.add("source.publication", Fail, "cannot read pg_publication: "+err.Error(), "check the connection")
		return false
	}
	scope := fmt.Sprintf("%d tables", n)
	if all {
		scope = "FOR ALL TABLES, " + scope + " now"
	}
	st, remedy := Pass, ""
	if n == 0 && !all {
		st, remedy = Warn, fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE …", pub)
	}
	c.add("source.publication", st, fmt.Sprintf("publication %s exists (%s)", pub, scope), remedy)
	return true
}

// onPrimary reports whether publication pub exists on the primary
// (source.primary_dsn); false when that cannot be read (the primary's own
// checks report connection problems).
func (c *checker) onPrimary(ctx context.Context, pub string) bool {
	conn, _, err := connect(ctx, c.cfg.Source.PrimaryDSN, "cdcd-check", c.cfg.Timeout)
	if err != nil {
		return false
	}
	defer conn.Close(context.WithoutCancel(ctx))
	exists, err := postgres.PublicationExists(ctx, conn, pub)
	return err == nil && exists
}

// slot checks the replication slot's existence and state.
func (c *checker) slot(s status.SlotState) {
	name := c.cfg.Source.Slot
	if !s.Exists {
		if c.cfg.Source.Create {
			c.add("source.slot", Pass, fmt.Sprintf("slot %s does not exist; cdcd will create it (source.create: true)", name), "")
		} else {
			c.add("source.slot", Fail, fmt.Sprintf("slot %s does not exist", name),
				fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput'), or set source.create: true", name))
		}
		return
	}
	detail := fmt.Sprintf("slot %s: wal_status %s, confirmed_flush_lsn %s, retains %s of WAL", name, s.WALStatus, s.ConfirmedFlushLSN, status.Bytes(s.RetainedWALBytes))
	if s.SafeWALBytes != nil {
		detail += ", safe_wal_size " + status.Bytes(*s.SafeWALBytes)
	}
	switch {
	case s.Invalidated != "":
		c.add("source.slot", Fail, detail+": INVALIDATED ("+s.Invalidated+"); changes were lost",
			fmt.Sprintf("drop the slot (SELECT pg_drop_replication_slot('%s')), let cdcd re-create it with a new trail directory, and re-synchronise the targets", name))
	case s.WALStatus == "unreserved":
		c.add("source.slot", Warn, detail+": past max_slot_wal_keep_size, invalidated at the next checkpoint unless consumed", "start cdcd now, or raise max_slot_wal_keep_size")
	case s.Active:
		c.add("source.slot", Warn, detail+": in use by another session (a running cdcd?)", "stop the other consumer before starting cdcd; only one may stream from a slot")
	default:
		c.add("source.slot", Pass, detail, "")
	}
}

// keepSize checks max_slot_wal_keep_size (MB, -1 unlimited).
func (c *checker) keepSize(v string) {
	mb, err := strconv.ParseInt(v, 10, 64)
	switch {
	case err != nil:
		c.add("source.max_slot_wal_keep_size", Warn, "max_slot_wal_keep_size unknown ("+v+")", "")
	case mb < 0:
		c.add("source.max_slot_wal_keep_size", Warn, "max_slot_wal_keep_size is unlimited: a stalled slot keeps WAL until the source's disk is full",
			"set a cap the source's disk can hold (ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT pg_reload_conf()) and watch cdcd's wal_guard")
	default:
		c.add("source.max_slot_wal_keep_size", Pass, fmt.Sprintf("max_slot_wal_keep_size is %s: a slot further behind is invalidated (the targets would need a re-sync)", status.Bytes(mb<<20)), "")
	}
}

// tables checks replica identity and TOASTable columns of the published
// tables (all user tables when the publication is yet to be created).
func (c *checker) tables(ctx context.Context, conn *pgx.Conn, pubExists bool) []table {
	scope := `c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'`
	args := []any{}
	if pubExists {
		scope = `EXISTS (SELECT 1 FROM pg_publication_tables t WHERE t.pubname = $1 AND t.schemaname = n.nspname AND t.tablename = c.relname)`
		args = append(args, c.cfg.Source.Publication)
	}
	rows, err := conn.Query(ctx, `SELECT n.nspname, c.relname, c.relreplident::text,
		EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
		EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attstorage <> 'p')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE `+scope+` ORDER BY 1, 2`, args...)
	if err != nil {
		c.add("source.replica_identity", Fail, "cannot list the published tables: "+err.Error(), "check the connection")
		return nil
	}
	var out []table
	var bad, toast []string
	for rows.Next() {
		var t table
		var ident string
		var pk, toastable bool
		if err := rows.Scan(&t.schema, &t.name, &ident, &pk, &toastable); err != nil {
			break
		}
		out = append(out, t)
		switch {
		case ident == "n":
			bad = append(bad, t.String()+" (REPLICA IDENTITY NOTHING)")
		case ident == "d" && !pk:
			bad = append(bad, t.String()+" (no primary key)")
		}
		if toastable {
			toast = append(toast, t.String())
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		c.add("source.replica_identity", Fail, "cannot list the published tables: "+err.Error(), "check the connection")
		return out
	}
	if len(bad) > 0 {
		c.add("source.replica_identity", Fail, fmt.Sprintf("%d published tables cannot replicate updates and deletes (the source even rejects them): %s", len(bad), list(bad, 5)),
			"ALTER TABLE … ADD PRIMARY KEY (…), or ALTER TABLE … REPLICA IDENTITY USING INDEX <unique index>, or REPLICA IDENTITY FULL")
	} else {
		c.add("source.replica_identity", Pass, fmt.Sprintf("all %d published tables have a primary key or replica identity", len(out)), "")
	}
	if len(toast) > 0 {
		c.add("source.toast", Pass, fmt.Sprintf("%d tables have TOASTable columns (%s): an update that leaves such a value alone sends it as unchanged, and cdcd leaves that target column untouched", len(toast), list(toast, 5)), "")
	} else {
		c.add("source.toast", Pass, "no TOASTable columns", "")
	}
	return out
}

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// ident quotes a name for SQL only when it needs quotes.
func ident(name string) string {
	if plainIdent.MatchString(name) {
		return name
	}
	return pgx.Identifier{name}.Sanitize()
}
