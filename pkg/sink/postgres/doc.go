// Package postgres is the PostgreSQL sink, for PostgreSQL and Aurora/RDS
// PostgreSQL targets: it applies batches of source transactions with
// set-based statements and stores its position in the same target
// transaction, so delivery is exactly-once.
//
// # Applying a batch
//
// Apply collapses the batch's changes per table and key into one final action
// per key (delete, upsert of the full row, or update of the columns whose
// values were sent), then runs, per table, one DELETE … USING unnest(…), one
// INSERT … SELECT … FROM unnest(…) ON CONFLICT (key) DO UPDATE for keys first
// seen as inserts (COPY for large sets), one UPDATE … FROM unnest(…) for the
// full rows of other keys (upserting the keys it did not find), and one
// UPDATE … FROM unnest(…) per set of updated columns. Values travel as text
// arrays and are cast on the server to the target column types read from the
// catalog. The session runs with hash and merge joins off, so every join of a
// batch's keys with a table probes its key index. The statements of a run of
// collapsed work go to the server in one pipeline (one round trip). Unchanged
// TOASTed values are never written: they are merged from an earlier full
// image of the row in the batch, or left out of the UPDATE.
// A TRUNCATE, a schema change of a table, or a key change that needs a value
// only the target has ends a run of collapsed work: what was collected runs
// first. See plan.go for the collapse rules and why the statement order is
// safe.
//
// Tables without a primary key or replica-identity index take inserts only
// (plain INSERTs, in order); an update or delete on one is a terminal error.
//
// # Transactions and position
//
// The first Apply begins a target transaction, in the round trip of its
// first statements (begin.go). A batch that is not Partial ends with an
// upsert of the sink's row in the checkpoint table (name, seq, end_lsn,
// updated_at) and COMMIT; a Partial batch leaves the transaction open for
// the next Apply. The upsert, COMMIT and (with asynchronous commit) the
// read of the target's WAL insert and flush positions share one round
// trip — the round trip of the batch's last statements when the batch
// begins and ends its transaction (fold.go): a batch of small transactions
// then costs one round trip. An error rolls everything uncommitted back. Position reads the
// checkpoint row, so after a crash apply resumes right after the last
// committed batch. The upsert only updates the row when it is still what
// this sink read or wrote last: a process killed just after it sent COMMIT
// leaves that commit running on the server, which may land after the next
// process read the row; that process then rolls back instead of applying
// the batch twice, and resumes from the new row.
//
// On FlavorPostgres a batch's transaction commits asynchronously
// (synchronous_commit = off; Config.SyncCommit turns it off) and Durable
// reports a position only once the target's WAL flush position has passed
// the WAL insert position read after its commit, so a target crash takes
// back only commits never reported durable (commit.go).
//
// # Errors
//
// Errors name the sink and its target as host:port/database user=…, never the
// password. Connection loss, serialization failures, deadlocks, server
// shutdowns and too_many_connections are marked sink.Retriable; the apply
// worker then recreates the Sink and retries from Position. Everything else
// (a missing table or column, authentication, constraint violations) is
// terminal.
//
// # Flavors
//
// Config.Flavor adapts the sink to PostgreSQL-compatible targets with
// their own rules (flavor.go). FlavorDSQL (Aurora DSQL, dsql.go): an IAM
// token per connection, connections replaced before DSQL's hour, each
// batch split into target transactions under DSQL's 3,000-row, 10 MiB and
// 5-minute limits that each carry the checkpoint with chunk marks (a large
// source transaction is then not atomic on the target, but never lost or
// applied twice), no TRUNCATE, temporary tables or replica role, 40001
// conflicts retried with backoff, and schema creation by a type rule
// (pkg/schema). FlavorCitus (citus.go): schema creation distributes tables
// on a primary-key column or makes reference tables, and apply sends one
// statement per key, which Citus routes to one shard.
//
// The session runs with session_replication_role = replica, as a logical
// replication subscriber does: user triggers and foreign-key checks do not
// fire for applied rows. This needs a superuser, rds_superuser, or (PostgreSQL
// 15 and later) GRANT SET ON PARAMETER session_replication_role.
package postgres
