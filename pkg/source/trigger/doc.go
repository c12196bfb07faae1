// Package trigger is cdcd's trigger-table source: the fallback for databases
// where logical decoding is not allowed (no wal_level=logical, no REPLICATION
// role, a PostgreSQL 13–15 physical standby chain). Triggers on the included
// tables copy every change into a change-log table; cdcd polls that table in
// commit order and deletes what the trail holds durably.
//
// This package is the part that talks to the database: [Install] and
// [Uninstall] create and remove the schema objects, a [Reader] polls
// ([Reader.Poll]) and converts change-log rows into pkg/change events,
// [Ack] deletes acknowledged rows, and [Exports] places an initial copy's
// snapshot at a batch boundary. [NewOpener] puts it all behind the
// source seam (pkg/source) as a [Source]; see "The trigger source".
//
// # Objects in schema cdcd
//
//	cdcd.change_log_id_seq   sequence, CACHE 1: the ordering id
//	cdcd.change_log          the change log (below)
//	cdcd.change_log_txid_id  index on change_log (txid, id): serves the
//	                         reads of a batch, a page at a time, and Ack
//	cdcd.source_id           one row: the change log's identity (below)
//	cdcd.capture_<oid>()     one trigger function per included table
//
// and, on every included table, four AFTER ... FOR EACH STATEMENT triggers
// named cdcd_insert, cdcd_update, cdcd_delete and cdcd_truncate.
//
// # The change log, field by field
//
// One row of cdcd.change_log per changed table row (one per TRUNCATE):
//
//	column  type    meaning
//	id      bigint  ordering id, nextval('cdcd.change_log_id_seq'). The
//	                sequence has CACHE 1 so ids are handed out in the order
//	                the writes happen across all sessions (with a cache each
//	                session would draw from its own range and the order
//	                between sessions would be lost).
//	txid    xid8    pg_current_xact_id() of the writing transaction: the
//	                top-level transaction id (also inside a savepoint), 64
//	                bits so it never wraps around.
//	relid   oid     pg_class OID of the changed table.
//	natts   int2    pg_class.relnatts of the table when the row was written:
//	                the number of attributes including dropped ones. It grows
//	                with every ADD COLUMN and never shrinks, so together with
//	                the number of fields in the row texts it tells the reader
//	                which columns the row texts hold (see "Schema changes").
//	op      "char"  'I' insert, 'U' update, 'D' delete, 'T' truncate.
//	old_row text    NULL for inserts and truncates. For a delete, the old key;
//	                for an update, the old key when a key column changed and
//	                NULL otherwise (as pgoutput sends a 'K' tuple only then).
//	                Tables captured with full old rows (REPLICA IDENTITY FULL,
//	                or key-less tables with Options.AllowKeyless) store the
//	                whole old row for every update and delete instead.
//	new_row text    the new row of an insert or update; NULL otherwise.
//
// Row representation. old_row and new_row hold the row's composite text
// output, record_out(row): "(1,\"a \"\"q\"\"\",,t)". record_out calls each
// column's own output function — the same text pgoutput sends — and quotes
// it: a field is empty for NULL, otherwise unquoted, or double-quoted with
// '"' and '\' doubled when it is empty or contains one of "(),\\ or
// whitespace. The reader reverses exactly that quoting, so every value comes
// back byte for byte as its type's text output: numeric NaN and its full
// scale, float ±Infinity and -0, arrays, enums, domains, composites,
// intervals, bytea, json with its whitespace, TOAST-sized values. The text
// form was chosen over to_jsonb (which converts timestamps, floats, bytea and
// arrays to JSON forms that are not their text output) and over explicit
// col::text casts (bool, inet and char(n) have casts that differ from their
// output functions: true::text is "true" but pgoutput sends "t"). One
// output call per row, in C, also makes it the cheapest exact choice.
//
// Output functions depend on session settings, so each trigger function pins
// them (the SET clauses cost one save/restore per statement, not per row):
// DateStyle 'ISO, YMD', IntervalStyle 'postgres', extra_float_digits 3
// (shortest exact float text), bytea_output 'hex', TimeZone 'UTC' and
// lc_monetary 'C'. What is stored therefore never depends on the writer's
// session.
//
// Schema changes. The fields of a row text are the table's attributes that
// were not dropped at write time, in attnum order (generated columns
// included; the reader leaves them out of the relation, as pgoutput does).
// The reader takes the attributes with attnum <= natts from the current
// catalog: columns added later are not part of that row's relation (the row
// is delivered under the shape it was written with, as pgoutput announces a
// relation per shape). A column dropped after the write is still in
// pg_attribute (attisdropped, without its name or type): when the field
// count shows that every dropped attribute up to natts was still present,
// the reader skips their fields, so such rows arrive without the dropped
// column; when it cannot tell which were present, Poll fails naming the
// table. Drain cdcd before dropping columns of captured tables. A changed primary
// key needs Install again (the trigger function projects the key columns).
//
// # Triggers
//
// Statement-level AFTER triggers with transition tables (REFERENCING NEW
// TABLE / OLD TABLE) write one INSERT ... SELECT per statement; that was
// measured about twice as fast as row-level triggers for a 100k-row INSERT
// and 1.4 times for a 100k-row UPDATE (BenchmarkBulk), and costs one
// function call (and one settings save/restore) per statement; for
// single-row OLTP statements row-level triggers are ~10% cheaper
// (BenchmarkPgbench), available as Options.RowTriggers. OLD and NEW
// transition tables of an UPDATE are filled side by side, one tuple each per
// updated row, so they are paired by their scan position
// (row_number() OVER ()); a single-row UPDATE skips the pairing. TRUNCATE fires a statement-level trigger that
// writes one 'T' row per truncated table. The functions are SECURITY
// DEFINER (owned by the installing role, search_path pinned to pg_catalog),
// so application roles need no privilege on schema cdcd. Dropping a
// trigger needs ownership of its table, creating one only the TRIGGER
// privilege: Install keeps triggers that are already right, and Uninstall
// (or a switch between row and statement triggers) drops the functions
// with CASCADE, which their owner may do.
//
// Dropping cdcd.change_log by hand makes every write to a captured table
// fail (the trigger cannot insert) rather than lose a change silently; Poll
// reports the missing table with the remedy.
//
// # Reading: the PgQ rule
//
// A position is a pg_snapshot, "xmin:xmax:xip,...": the set of transactions
// whose effects it sees. A poll takes cur := pg_current_snapshot() and reads
//
//	txid >= pg_snapshot_xmin(prev)                 -- the index range
//	AND pg_visible_in_snapshot(txid, cur)           -- committed by now
//	AND NOT pg_visible_in_snapshot(txid, prev)      -- not read before
//
// in one statement, whose MVCC snapshot is cur itself (one statement, one
// snapshot: the same consistency as the REPEATABLE READ transaction PgQ uses,
// in one round trip, so an idle database costs one small query per poll).
// Each transaction is therefore read exactly once, by the first poll whose
// snapshot sees it committed, however long it stayed open. The poll reads
// one row per transaction (count, first and last id, GROUP BY txid); the
// changes are read afterwards by txid — they are committed and stay until
// acknowledged — in groups of whole transactions, or a large transaction in
// pages by (txid, id), so memory is bounded by Config.ReadRows rows however
// large the backlog. Within a transaction rows are in id order; the
// transactions of one poll are ordered by their last id: a transaction that touched a row after
// another wrote it could do so only after that one committed, so its last id
// is larger, and this order agrees with commit order wherever two
// transactions conflict.
//
// Why polling by time or by id loses rows: ids and timestamps are assigned
// when a row is written, not when its transaction commits. A transaction T1
// that writes id 10 and commits late is invisible while a poll reads id 11 of
// a later-started, earlier-committed T2; the poll stores 11 as "last seen"
// and T1's row, visible from the next poll on, is below it forever.
//
// # Positions in the trail
//
// A position is only defined between polls: Batch.Cur holds after all of
// a batch's transactions. A crash in the middle of writing a batch is
// resumed from the batch's Prev and Cur: PollBetween(Prev, Cur) returns the
// same transactions in the same order, and the ones already durable are
// skipped. An empty batch carries no transaction and need not be stored
// (the next poll from the older position reads the same rows). The trigger
// source keeps Prev, Cur and the trail position before the batch in a state
// file of its own; see "The trigger source".
//
// # First position and the initial copy
//
// The first position of a new trail is [Earliest]: everything the log
// holds. For a reader of its own, [Start] is the current snapshot, and
// [StartExport] opens a REPEATABLE READ transaction, takes
// pg_current_snapshot() as the first position and exports the same MVCC
// snapshot (pg_export_snapshot()); copy workers import it with SET
// TRANSACTION SNAPSHOT while the export stays open. The copy then holds
// exactly the transactions visible in the position and the polls deliver
// exactly the others. A running source places a copy's snapshot at a batch
// boundary instead ([Exports], "Initial copy" below).
//
// # Acknowledgement
//
// [Ack] deletes the rows of the transactions visible in an acknowledged
// snapshot, in batches of 10,000 rows (each its own statement) so no single
// statement holds locks, WAL and dead tuples for long. It must be called only with a position whose
// transactions the trail holds durably: once deleted, a change is gone from
// the source. PgQ avoids the bloat of DELETE by rotating between several
// log tables and TRUNCATE-ing the one fully acknowledged; that needs an
// ACCESS EXCLUSIVE lock (blocking the application's writes for a moment)
// and a union read over the tables. Batched DELETE plus autovacuum keeps
// writers lock-free; on a log that sees millions of rows an hour, tune
// autovacuum for cdcd.change_log (lower scale factor) or move to rotation.
//
// # The trigger source
//
// [NewOpener] returns the source.Opener capture uses. Each session
// connects, checks that the change log and the triggers of every included
// table are there ([Verify]; with Config.Create it runs [Install] when
// something is missing, otherwise that is a terminal error naming the
// objects and `cdcd trigger install --config <file>`), and reads the
// identity: source.Identity{Kind: "trigger", SystemID: cdcd.source_id.id},
// 64 random non-zero bits drawn by the first Install and kept by every
// reinstall ([SystemID]). Uninstall drops it with the change log, so a trail
// is never continued from another change log, or from this database after
// its unread changes were dropped.
//
// Positions. The trail stores change.LSN positions; this source makes them
// up as a monotone counter. The i-th transaction (from 0) of a batch whose
// base is B, the EndLSN of the last transaction before the batch, gets
//
//	FinalLSN = CommitLSN = B + 2i + 1,   EndLSN = B + 2i + 2
//
// so EndLSNs of held transactions are even offsets from B and capture's
// "skip what ends at or below held" drops re-delivered transactions
// exactly. XID is the low 32 bits of the xid8; CommitTime is the time of
// the poll that read the transaction (the change log does not record
// commit times).
//
// The state file, StateFile ("trigger.position") in Config.StateDir (the
// trail directory), mode 0600, is text:
//
//	cdcd trigger position 1
//	system <source id, decimal>
//	prev <pg_snapshot text>
//	cur <pg_snapshot text>
//	base <LSN counter, decimal>
//	crc32c <CRC-32C (Castagnoli) of every byte above, 8 hex digits>
//
// It says "the batch Prev→Cur is being written to the trail after Base";
// Prev = Cur means no batch is in flight: the next poll starts at Cur and
// its first transaction follows Base. It is replaced atomically: written
// to "trigger.position.tmp" and fsynced, renamed over the file, directory
// fsynced. A file that fails to parse or its checksum is a terminal error,
// never "no state" (starting over would skip or repeat transactions).
//
// Crash safety, step by step (each numbered step is done, durably, before
// the next one starts):
//
//  1. First start (no state file; the trail must be new, held = 0): take
//     the current snapshot S ([Start]) and store {S, S, 0} before the first
//     poll, so a restart reads from S and not from a later "now" that would
//     skip what committed in between.
//  2. Poll: cur := the current snapshot, rows visible in cur and not in
//     prev. An empty poll moves prev to cur in memory only: a restart polls
//     from the stored, older prev and finds the same nothing plus whatever
//     came since.
//  3. A poll that read transactions stores {prev, cur, base} BEFORE its
//     first event is returned.
//  4. Next returns Begin, Relation (before a table's first change in the
//     session and after every change of its columns, with the real primary
//     key), Change and Commit events for each transaction, in order. No
//     further poll runs while a batch waits for its acknowledgement: the
//     state file describes one batch in flight.
//  5. Start(held) after a restart, with state {Prev, Cur, Base}:
//     held < Base: the trail lost transactions whose rows were deleted;
//     error wrapping source.ErrAhead. Prev = Cur: held must equal Base;
//     delete the rows visible in Cur (a crash may have come between steps
//     7 and 8) and poll on from Cur. Otherwise held = Base + 2k:
//     PollBetween(Prev, Cur) returns the same transactions in the same
//     order (nothing of them was deleted: step 8 comes after step 7), the
//     first k are skipped and the rest delivered; k = all of them goes to
//     step 7 at once. held that is odd, or beyond the batch, is a terminal
//     error.
//  6. Ack(pos): nothing happens until pos reaches the EndLSN of the batch's
//     last transaction: a partly durable batch keeps its rows.
//  7. Then store {Cur, Cur, lastEnd}, the batch complete ...
//  8. ... and only then delete the rows visible in Cur ([Ack]). A failed
//     delete is retried by the next Ack and by Start; the rows left are
//     visible in the stored position and never read again.
//
// Ack never returns a position to adopt: there is none between polls that
// the trail could store without a transaction.
//
// Errors that reopening cannot cure (a missing change log or triggers, a
// missing privilege, a trail that does not fit the state, a corrupt state
// file) are [TerminalError]s — the seam's source.TerminalError, so capture
// stops on them (source.IsTerminal) without importing this package — and
// retries every other error by reopening the source and starting again
// from the trail's held position.
//
// # Initial copy
//
// A copy (the snapshot runner) must read under a snapshot that splits the
// stream at one position: the transactions before the position are in the
// copy, those after it are not. A poll's batch holds the transactions
// visible in its snapshot and not in the previous one, in change-id order,
// not commit order, so a copy's own snapshot would fall inside a batch.
// [Exports] has the source place the boundary instead: at its next poll
// (no batch in flight) it exports a snapshot S on a connection of its
// own and reads the batch PollBetween(prev, S), so that batch ends exactly
// at S. Every transaction of that batch and the earlier ones is visible in
// S (in the copy); every later batch holds only transactions that are not
// (they are not visible in S by the reading rule). The copy's tables skip
// the stream up to the batch's end position. Steps 2-8 are unchanged: the
// batch is stored before its first event and re-read identically after a
// crash, so the boundary position is stable. The exporting transaction
// stays open until the copy's workers have imported S.
//
// # Privileges
//
// PostgreSQL 13 or newer (xid8, pg_current_xact_id, pg_visible_in_snapshot).
// An ordinary role, no REPLICATION and no superuser:
//   - Install: CREATE on the database (for schema cdcd, or ownership of an
//     existing cdcd schema), USAGE on each table's schema and TRIGGER on each
//     included table (or ownership). CREATE TRIGGER waits for transactions
//     writing the table to end (SHARE ROW EXCLUSIVE lock).
//   - Poll and Ack: USAGE on schema cdcd, SELECT and DELETE on
//     cdcd.change_log (the installing role has them as owner).
//   - The initial copy: SELECT on the included tables.
package trigger
