// Package postgres is cdcd's PostgreSQL logical-replication source: it opens
// the replication connection, prepares the publication and slot, starts
// pgoutput streaming, and exposes the raw stream (XLogData and keepalives)
// plus the catalog lookups and heartbeats capture needs.
//
// The source works against a primary or against a physical standby (PG16+
// can decode on a standby). On a standby the publication must come from the
// primary and heartbeats must be emitted on the primary: set PrimaryDSN. A
// publication missing on the standby is then looked up on the primary (the
// standby may not have replayed it yet), created there if missing and
// source.create allows, and waited for until the standby has replayed it.
//
// Least privileges: the source role needs REPLICATION (or rds_replication on
// RDS/Aurora), CONNECT on the database, SELECT on pg_catalog (default), and
// for create: true also CREATE on the database (publication FOR ALL TABLES
// needs superuser; otherwise create the publication yourself). Heartbeats call
// pg_logical_emit_message, which needs EXECUTE on it (granted to PUBLIC by
// default on PG15+... check your platform) or REPLICATION.
package postgres
