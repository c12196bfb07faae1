// Package cutover switches an application from a blue source database to a
// green target that cdcd keeps in sync, with seconds of write downtime, a
// check of the data, and a way back:
//
//  1. pre-checks: every sink's lag is below MaxLagBytes, no transaction on
//     the source is older than MaxTransactionAge, no DDL holds a lock, and
//     every source sequence exists on the target;
//  2. fence: ALTER DATABASE … SET default_transaction_read_only = on (new
//     sessions are read-only), then every other client session of the
//     database is ended (cdcd's own, named cdcd…, are kept), so no
//     session that could still write survives (FenceGrace first lets the
//     transactions in progress finish); or FenceCommand;
//  3. drain: a logical message is committed on the source and every sink's
//     checkpoint (in its target's checkpoint table) must pass its LSN —
//     zero lag, decided by position, not by time;
//  4. sequences: every target sequence is set to the source's value plus
//     SequenceGap increments;
//  5. verify: full (counts and checksums), counts, off — inside the write
//     pause — or after: green's state is pinned by an exported snapshot
//     before it takes writes, blue stays fenced, and the comparison runs
//     after the switch (a mismatch raises Report.Alert: the way back is
//     `cdcd cutover --back`);
//  6. switch: the Hook command (a load-balancer flip, a DNS change, a
//     PgBouncer reload); when it fails, the source is unfenced and the
//     cutover stops with blue in service;
//  7. rollback (optional): before the switch a publication and a slot are
//     created on green, so replication green → blue (a second cdcd
//     pipeline, started by the caller from RollbackSlot) misses nothing
//     green takes after the switch;
//  8. the report: each step's duration and the write-unavailable time,
//     from the fence to the end of the hook.
//
// Any failure before the switch unfences the source: blue stays in service.
package cutover
