// Package kafka is the Kafka sink: every row change becomes one record on a
// topic per table, keyed by the row's primary key, in a JSON envelope that
// Debezium consumers read unchanged.
//
// # Topics, keys, partitions
//
// The topic comes from a template, "cdc.{schema}.{table}" by default ({schema}
// and {table} are replaced; a template without them sends every table to one
// topic). Missing topics are created (broker-default partitions and
// replication unless configured). The record key is the JSON object of the
// key columns, {"id":42}, the same as Debezium's key with schemas disabled;
// records are partitioned by a murmur2 hash of the key (Kafka's Java default),
// so every change of one row lands on one partition, in source order. Tables
// without a key get a null key. A TRUNCATE event is written to every partition
// of the table's topic, so it is ordered with respect to every key.
//
// # Envelope (envelope: debezium, the default)
//
// The value is Debezium's change event payload (JsonConverter with
// schemas.enable=false):
//
//	{"before":{…}|null, "after":{…}|null,
//	 "source":{"version":"…","connector":"cdcd","name":<sink>,"ts_ms":<commit ms>,
//	           "snapshot":"false","db":…,"schema":…,"table":…,"txId":<xid>,"lsn":<lsn>},
//	 "op":"c"|"u"|"d"|"t", "ts_ms":<ms when cdcd wrote it>, "unchanged":["col",…]}
//
// op is c (insert), u (update), d (delete), t (truncate; before and after
// null); r (snapshot read) is reserved for snapshot rows, which the trail does
// not mark yet. An update that changes the key is written as Debezium does: a
// delete under the old key, then a create under the new one.
//
// before holds the old row when the source sent one (REPLICA IDENTITY FULL,
// or the key columns only under DEFAULT identity when the key changed or the
// row was deleted); columns the source did not send are left out, never
// written as null. after never holds an unchanged TOASTed column: PostgreSQL
// did not send its value, so it is left out of after and its name is listed in
// "unchanged" (present only when non-empty). A consumer must keep its previous
// value for those columns.
//
// envelope: plain writes the after row object alone as the value (a delete
// writes a null value, which is a tombstone), with the op in the "cdcd.op"
// header and unchanged-TOAST columns in the "cdcd.unchanged" header
// (comma-separated).
//
// With tombstones: true a delete is followed by a record with the same key
// and a null value, so log compaction can drop the key.
//
// # Values (lossless)
//
//   - bool: true/false; int2, int4, int8, oid, xid: JSON numbers with PostgreSQL's
//     exact digits (int8 is never rounded through a float, so values beyond
//     2^53 are exact: parse them as 64-bit integers or big numbers, e.g. Go's
//     json.Decoder.UseNumber, Java's long — not JavaScript's JSON.parse);
//   - float4, float8: JSON numbers; NaN, Infinity, -Infinity as those strings;
//   - numeric: a string with PostgreSQL's exact digits ("1234.5600", "NaN"),
//     like Debezium's decimal.handling.mode=string;
//   - timestamptz: an ISO-8601 string in UTC, "2024-05-01T10:00:00.123456Z"
//     (Debezium's ZonedTimestamp); timestamp: microseconds since the epoch as a
//     number (MicroTimestamp); date: days since the epoch (Date); time:
//     microseconds since midnight (MicroTime); infinite values are the strings
//     "infinity" and "-infinity"; timetz and interval: PostgreSQL's text;
//   - bytea: base64 of the bytes (Debezium's binary.handling.mode=bytes);
//   - json, jsonb: the document embedded as JSON (Debezium instead sends a
//     string holding the JSON; decode it as a JSON value);
//   - arrays: JSON arrays (nested for several dimensions) of elements mapped
//     by these rules;
//   - everything else (text, varchar, uuid, enums, inet, money, ranges, …):
//     PostgreSQL's text form as a string.
//
// # Headers
//
// Every record carries "cdcd.txid" (source transaction id), "cdcd.commit_lsn"
// (the commit's LSN, PostgreSQL's text form) and "cdcd.tx_seq" (0-based
// position of the change in its transaction), all as text.
//
// # Delivery
//
// delivery: exactly-once (the default) uses a transactional producer. Every
// apply batch — whole source transactions — is one Kafka transaction holding
// the batch's records and a checkpoint record, keyed by the sink name, on a
// compacted checkpoint topic ("cdcd.checkpoints" by default):
//
//	{"sink":…,"seq":<trail sequence>,"end_lsn":"16/B374D878","ts_ms":…}
//
// Crash-safety steps, in order:
//  1. Open: InitProducerID with the transactional id ("cdcd-<sink>" by
//     default) fences any previous producer (a killed cdcd) and aborts its open
//     transaction.
//  2. Position: read the checkpoint topic with read_committed to its last
//     stable offset; the last record under our key is where apply resumes.
//     A read that stalls (no record for 5 s before that offset) or fails is
//     a retriable error (ErrCheckpointStalled for a stall), never a guess:
//     resuming from an older checkpoint would write its later batches twice.
//     Apply retries with backoff, re-reading the topic from its start.
//  3. Apply: produce asynchronously, then the checkpoint record, Flush (every
//     record acknowledged), then EndTransaction(commit). A source transaction
//     larger than one apply batch (Partial batches) stays inside one Kafka
//     transaction until its last chunk.
//  4. Any failure — a record not acknowledged, a failed or unconfirmed commit —
//     aborts (never retries the commit), and returns a retriable error: apply
//     reopens the sink, which resumes from the committed checkpoint. Aborted
//     records are invisible to read_committed consumers, so they see every
//     change exactly once, in order per key.
//
// # Transaction cadence
//
// Each batch costs more than its records: AddPartitionsToTxn and EndTxn round
// trips, the checkpoint record, and a commit marker the broker writes on
// every partition the transaction touched. Apply closes a batch as soon as
// it has caught up with the trail, so a sink that keeps up with capture
// would commit every few source transactions (about 190 rows per Kafka
// transaction in the PG→Kafka benchmark, where the broker's and the
// producer's per-transaction work took a third of the CPU the sink added).
// The sink is therefore a sink.BatchPacer: apply holds a caught-up batch
// open for kafka.min_batch_delay (default 50ms, at most batch.max_delay)
// unless batch.max_rows or max_bytes fill it first — a Kafka Streams
// exactly-once application commits every 100ms by default. Changes reach
// consumers up to that much later; min_batch_delay: off restores
// commit-on-catch-up.
//
// delivery: at-least-once uses the idempotent producer without transactions
// (for brokers without transactions). After a batch is acknowledged, the
// checkpoint record is written to the same topic; a crash between the two
// re-sends that batch. Consumers may then see duplicates, never gaps.
package kafka
