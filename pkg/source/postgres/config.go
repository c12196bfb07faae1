package postgres

import "time"

// Config configures the PostgreSQL source. The zero value of every field
// means its default.
type Config struct {
	// DSN is the source connection string (URL or key=value). Required.
	// It may point at a primary or at a PG16+ physical standby.
	DSN string
	// PrimaryDSN, when the source is a standby, is the primary's connection
	// string, used to create the publication and emit heartbeats (a standby
	// is read-only). Default: none; on a standby heartbeats are then off.
	PrimaryDSN string
	// Slot is the logical replication slot name. Default "cdcd".
	Slot string
	// Publication is the pgoutput publication name. Default "cdcd".
	Publication string
	// Create makes the source create a missing publication (FOR ALL TABLES)
	// and slot. Default false: a missing one is an error.
	Create bool
	// Heartbeat is the interval of pg_logical_emit_message heartbeats that
	// keep the slot moving on an idle database. Default 10s; negative
	// disables them.
	Heartbeat time.Duration
	// StatusInterval is how often a standby status update is sent even when
	// the position did not change. Default 10s (the server's
	// wal_receiver_timeout is 60s by default).
	StatusInterval time.Duration
	// Streaming is "on", "off" or "auto": whether the server sends large
	// transactions while they run (pgoutput protocol 2, streaming on) so
	// that they are spooled on the cdcd host instead of spilled to the
	// source's disk. "auto" turns it on where the server supports it
	// (PostgreSQL 14+); "on" refuses an older server. Default "auto".
	Streaming string
	// ForwardStreamed hands a streamed transaction to capture as it
	// arrives, before its Stream Commit, while it is the only one open, so
	// that apply can work on it while the source still runs or sends it
	// (PostgreSQL 16's parallel apply does the same). If it aborts, another
	// transaction commits first, one of its subtransactions aborts or an
	// ordinary transaction arrives, it is withdrawn (source.Withdraw: capture
	// rolls the trail back and apply starts over) and comes again whole from
	// the spool at its commit. Only for sinks that keep a transaction's
	// Partial batches invisible until its last one (a PostgreSQL or Oracle
	// target): the forwarded transaction may still abort, and its commit
	// LSN and time are not known before its end. Default false.
	ForwardStreamed bool
	// SpoolDir is where streamed transactions larger than the in-memory
	// spool are written until their commit. Default: a temporary directory
	// (capture sets it to the trail directory's "spool").
	SpoolDir string
	// StateDir, when set, is where the source records the timeline it
	// reads (file source.timeline), so a promotion is noticed across a
	// restart too (capture sets it to the trail directory). Default "":
	// only within one process.
	StateDir string
	// Failover is "on", "off" or "auto": whether the slot is a PostgreSQL
	// 17 failover slot (created with FAILOVER, or switched on with
	// ALTER_REPLICATION_SLOT), which standbys with sync_replication_slots
	// keep in sync so cdcd continues after a promotion. "auto" turns it on
	// for a PostgreSQL 17+ primary; "on" refuses an older server or a
	// standby. Default "auto".
	Failover string
}

// Defaults returns c with every zero field set to its default.
func (c Config) Defaults() Config {
	if c.Slot == "" {
		c.Slot = "cdcd"
	}
	if c.Publication == "" {
		c.Publication = "cdcd"
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 10 * time.Second
	}
	if c.Streaming == "" {
		c.Streaming = "auto"
	}
	if c.Failover == "" {
		c.Failover = "auto"
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = 10 * time.Second
	}
	return c
}
