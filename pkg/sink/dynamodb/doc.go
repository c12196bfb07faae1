// Package dynamodb is the DynamoDB sink: every source row is one item, keyed
// by the row's primary key (or the configured partition and sort columns),
// kept equal to the row's latest state; a delete deletes the item.
//
// # Tables and items
//
// The table name comes from a template, "{schema}_{table}" by default. The
// item key is the table's primary key — its first column the partition key,
// a second one the sort key — unless keys: {"schema.table": {partition: …,
// sort: …}} says otherwise (a key of more than two columns must be
// configured). With schema.create: true a missing table is created
// (on-demand billing; key attributes N for integer and numeric columns, B
// for bytea, S otherwise) and cdcd waits until it is active; without it a
// missing table is an error naming the table and the key it needs. A key
// value is written in the type the table declares for its key attribute.
//
// document: flat (the default) writes every column as a top-level attribute
// named after it; document: nested writes the key attributes at the top level
// and every column under one map attribute ("doc"). Every item also carries
// its version attribute ("cdcd_version", see Versions).
//
// # Writes
//
// Apply collapses a batch's changes to one operation per item key (the
// last change wins; an update whose TOASTed columns did not change is merged
// into an earlier full row of the same batch): a full row is a put, a row
// with unchanged-TOAST columns an UpdateItem that sets only the columns the
// source sent (the others keep their attribute), a delete a delete. A key
// change is a delete of the old item and a put of the new one; if the new
// row has unchanged-TOAST columns, their values are read from the old item
// (GetItem, consistent) before the batch writes anything.
//
// Puts and deletes go in BatchWriteItem calls of up to 25 items (16 MB),
// updates in UpdateItem calls, Parallelism (8) calls in flight. Since each key
// is in exactly one operation per batch, and a batch returns only once every
// call is acknowledged, a key is never in two calls at once and a later
// change of a key is never sent before an earlier one is stored.
// UnprocessedItems are retried inside their call with capped exponential
// backoff and jitter (25ms doubling, at most MaxBackoff, 5s) until written.
//
// Throttling never stops the sink. The SDK's retryer runs without its retry
// quota (ratelimit.None: the default quota gives up under sustained
// throttling with "retry quota exceeded"), MaxAttempts (8) attempts per
// call; a call still throttled after them is retried again, with the same
// backoff, for as long as the table refuses. Each throttled attempt counts
// in Stats.Throttled and a warning is logged at most every 10 seconds. Other
// retriable failures the SDK gave up on (lost responses, 5xx, connection
// errors) are retried MaxAttempts more times by the sink — every write is
// idempotent — and then end Apply with a retriable error: the apply worker
// reopens the sink, which resumes from the checkpoint item. Validation
// errors, missing tables and credential or permission errors are terminal.
//
// # Versions
//
// The version attribute is a number: the decimal digits of the change's
// transaction commit LSN followed by the change's position in its
// transaction as ten digits (commit 0/16B3748 = 23803720, third change:
// 238037200000000002). Versions grow in source commit order, so a stored
// item's version says which source state it holds. Snapshot rows have
// version 0 and are written unconditionally (the snapshot precedes every
// streamed change of its tables).
//
// # The checkpoint item
//
// Positions live in one item per sink in the checkpoint table
// ("cdcd_checkpoints", partition key sink (S), created on demand when
// missing):
//
//	sink          S  the sink's name
//	seq           N  trail sequence number of the last applied COMMIT
//	end_lsn       N  its end LSN (end_lsn_text: the same, PostgreSQL's text form)
//	high_water    N  the largest commit LSN of any change ever sent
//	updated_at    S  when it was written (RFC 3339, UTC)
//
// A snapshot loads through Load (sink.BulkLoader): each snapshot worker
// opens its own sink and streams its chunks' COPY text rows as puts into
// BatchWriteItem calls, Parallelism in flight; once every item of a chunk is
// acknowledged, an item keyed "<sink>#snapshot#<snapshot id>#<chunk id>"
// (rows N) records it in the checkpoint table, and Loaded lists them, so a
// resumed snapshot skips finished chunks (a chunk cut off by a crash is
// loaded again: the same items). A snapshot in mode always deletes the
// table's items first.
//
// # Crash safety
//
// DynamoDB cannot write data and a position atomically, so:
//  1. Open: read the checkpoint item (strongly consistent). Apply resumes
//     after seq; changes committed at or before high_water may already be
//     stored — the replay window.
//  2. Before sending a batch with changes newer than high_water, raise
//     high_water to the batch's largest commit LSN (PutItem of the checkpoint
//     item).
//  3. Write the batch (Writes). In the replay window every write is
//     conditional: a put, update or delete succeeds only if the item has no
//     version or an older one (attribute_not_exists(v) OR v < :v); a write
//     that finds a newer version is skipped (Stats.Skipped). BatchWriteItem
//     takes no conditions, so these go one item per call.
//  4. After every item of the batch is acknowledged, write seq and end_lsn
//     (PutItem of the checkpoint item). A crash before this re-sends the batch.
//
// What a reader observes (eventually consistent reads may lag by DynamoDB's
// usual replication delay; strongly consistent reads see the latest write):
//   - Each item holds a state its source row had at some commit, and, read
//     after read, never moves back to an older state: outside the replay
//     window a key's writes are sent in commit order, one at a time; inside
//     it a stale write fails its condition.
//   - The items of one source transaction do not appear together: there is
//     no cross-item atomicity, a reader may see some of a transaction's rows
//     new and others old, or a batch partly written.
//   - A deleted row's item stays deleted, except during a replay window: a
//     put replayed from before the delete finds no item (and so no version
//     to lose to) and writes the old row back, until the replayed delete
//     removes it again, within the same replay (seconds, the time to re-apply
//     one batch's worth of changes).
//   - An update of only some columns (unchanged TOAST) replayed onto a
//     deleted item briefly creates an item with only those columns, removed
//     the same way.
//   - With document: nested, an update of some columns of an item that does
//     not exist is skipped (it has no map to set them in); flat items get
//     the columns that were sent.
//   - After the replay window, items equal the source's rows as of the
//     checkpoint; the sink never acknowledges a position before every item
//     up to it is stored.
//
// # Values (lossless)
//
//   - int2, int4, int8, oid, xid, numeric, float4, float8: N with
//     PostgreSQL's exact digits when DynamoDB can hold the number exactly (at
//     most 38 significant digits, magnitude 1E-130 to 9.99…E+125); otherwise
//     — longer numerics, NaN, Infinity, -Infinity, a float's -0 — an S with
//     PostgreSQL's text. N keeps the value, not the scale: 1.50 reads back as
//     1.5.
//   - bool: BOOL; NULL: NULL; bytea: B.
//   - json, jsonb (json: map, the default): an object is an M, an array an L,
//     their members N, S, BOOL, NULL, M, L. A document that is a scalar, or
//     holds a number N cannot hold exactly, is an S holding the JSON text; so
//     for a json column an S is always JSON text to parse. json: string
//     writes every document as its text (json keeps its formatting, key order
//     and duplicate keys only this way).
//   - arrays: L of elements mapped by these rules, nested for several
//     dimensions (non-default lower bounds are not kept).
//   - timestamptz: ISO-8601 S with its offset ("2024-02-29T11:14:15.123456+00:00");
//     timestamp: "2024-02-29T13:14:15.123456"; timetz: "13:14:15+05:30";
//     date and time: PostgreSQL's ISO text; infinity, -infinity and BC
//     values keep PostgreSQL's text.
//   - everything else (text, uuid, interval, enums, ranges, money, …):
//     PostgreSQL's text form, an S.
//
// An item over DynamoDB's 400 KB limit stops the sink with an error naming
// its table and key; with dead_letter: true it is appended (DynamoDB JSON,
// one line) to <trail.dir>/<sink>.dead-letter.jsonl and apply goes on.
//
// TRUNCATE deletes every item of the table (a scan of its keys, deleted in
// batches); logical decoding messages are ignored.
package dynamodb
