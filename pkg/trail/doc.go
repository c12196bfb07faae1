// Package trail is cdcd's durable, segmented, append-only local log between
// capture and apply (GoldenGate calls it the "trail").
//
// Capture writes whole source transactions with a Writer and acknowledges the
// source only up to Writer.Sync's result; every sink's apply reads the trail
// independently with a Reader from its own checkpoint. A slow or broken sink
// therefore costs trail disk, never WAL retention on the source.
//
// # Directory
//
// A trail is a directory of segment files named by the sequence number of the
// first record they hold, zero-padded to 20 digits so that lexical order is
// numeric order:
//
//	00000000000000000001.trail
//	00000000000000004711.trail
//
// Sequence numbers start at 1 and are contiguous across segments: a segment
// holds the records [its first seq, the next segment's first seq). Only the
// newest segment is written to ("active"); older ones are sealed and never
// change until purged. More kinds of file may appear:
//
//   - "<segment>.tmp": a segment being created. It is written completely,
//     fsynced, then renamed into place and the directory fsynced, so a crash
//     never leaves a half-made segment under a real name. Open deletes
//     leftovers.
//   - "<segment>.broken" (or ".broken.N"): bytes cut off the tail of the
//     active segment by recovery, kept for forensics (as etcd's repair.go
//     does). Nothing reads them.
//   - "trail.closed": the state a clean Close left for the next Open
//     (below, "Close state").
//
// The trail holds every captured row, so Open creates the directory 0700 and
// every file in it 0600, with explicit modes that a umask can only narrow
// (other cdcd packages keep their checkpoint and state files there the same
// way). An existing directory keeps its mode — the operator may have given a
// backup agent's group access — and Open logs a warning if others can reach
// it.
//
// # Segment header
//
// Every segment starts with a 48-byte header; all integers are little endian:
//
//	offset size field
//	     0    8 magic "cdcdtrl\x00"
//	     8    2 format version (1)
//	    10    2 header size in bytes (48), so a later version can grow it
//	    12    4 flags (0)
//	    16    8 source system identifier (0 = unknown)
//	    24    8 sequence number of the segment's first record (= file name)
//	    32    8 EndLSN of the last COMMIT before this segment (0 = none)
//	    40    4 source kind: 0 pgoutput ("postgres"), 1 trigger tables
//	              ("trigger"); trails from before the field hold 0
//	    44    4 CRC-32C (Castagnoli) of bytes [0, 44)
//
// The previous EndLSN lets Open learn the trail's resume position from the
// active segment alone, even when that segment holds no COMMIT yet. The system
// identifier stops a trail from being continued from a different database
// cluster (a restored or re-initialised source has a new identifier).
//
// # Record frames
//
// Records follow the header back to back, each framed and 8-byte aligned:
//
//	offset size field
//	     0    4 payload length n (> 0)
//	     4    4 CRC-32C over (segment first seq as 8 bytes ‖ length as 4 bytes ‖ payload)
//	     8    n payload
//	   8+n    p zero padding, p = (8 - n%8) % 8
//
// Seeding the checksum with the segment's first sequence number binds a record
// to its segment: a record (or a stale page) copied from another segment fails
// the check even though its own bytes are intact. Alignment keeps frame
// headers from straddling sectors and makes frames easy to find in a hex dump.
//
// # Record payloads
//
// A payload is a record type byte, the record's sequence number (uvarint) and
// a type-specific body. Integers are encoding/binary uvarints unless noted;
// "varint" is the zig-zag signed form; "str" and "bytes" are a uvarint length
// followed by that many bytes; "bool" is one byte 0 or 1.
//
//	1 SCHEMA  relation OID, schema str, name str, replica identity byte,
//	          column count, per column {name str, type OID, type name str,
//	          typmod varint, key bool}, primary-key count, per key column
//	          index into the columns
//	2 BEGIN   transaction (below)
//	3 CHANGE  op byte (change.Op), LSN, then
//	            insert/update/delete: relation OID, flags byte (1 old row
//	              present, 2 old row is key-only, 4 new row present), old row
//	              if present, new row if present;
//	            truncate: flags byte (1 cascade, 2 restart identity),
//	              relation count, relation OIDs
//	4 MESSAGE LSN, flags byte (1 transactional, 2 content present), prefix
//	          str, content bytes
//	5 COMMIT  transaction (below)
//
// A transaction is XID, FinalLSN, CommitLSN, EndLSN, commit time (a byte: 0
// for the zero time, else 1 followed by Unix seconds varint and nanoseconds),
// origin str. BEGIN and COMMIT carry the same encoding so either can be read
// alone; the COMMIT's EndLSN is the position capture resumes from and
// acknowledges. Times decode in UTC. A transaction capture wrote as it
// arrived, before its commit (a streamed transaction forwarded by the
// source, so that apply can start on it early), has a BEGIN with only its
// XID (FinalLSN 0): its COMMIT alone says where it commits. Such a
// transaction may be rolled back (below, "Readers") if the source
// withdraws it; it then comes again later, whole.
//
// A row is a value count followed by each value: a kind byte (change.ValueKind:
// absent, null, text, binary, unchanged-TOAST — all five survive a round
// trip), and for text and binary the data as bytes. A row's value count must
// equal its relation's column count.
//
// Changes name their relation by OID; a reader resolves it to the latest
// SCHEMA record seen for that OID. The Writer writes a SCHEMA record before
// the first change of any relation it has not written yet, and every new
// segment starts by re-writing the latest SCHEMA of every relation the writer
// knows, so each segment is self-describing: a reader starting mid-trail or
// after a purge resolves relations from the segment start, and Open rebuilds
// the schema map from the active segment alone.
//
// # Transactions, durability and rollover
//
// A transaction is BEGIN, any SCHEMA/CHANGE/MESSAGE records, COMMIT. SCHEMA
// records and non-transactional MESSAGE records may also stand alone between
// transactions. Records are buffered in memory and written in large chunks;
// nothing is fsynced until Sync, which is the group commit: one fdatasync
// covers every transaction committed since the previous one, and only then
// does Writer.Durable (the Reader's Limit) move. Rollover to a new segment
// happens only inside Sync, between transactions, once the active segment has
// reached Options.SegmentBytes.
//
// An I/O error while writing, truncating or syncing is sticky: after a failed
// fsync the kernel may have dropped the dirty pages, so retrying could report
// lost data as durable. The Writer must be reopened, which re-runs recovery.
//
// # Recovery
//
// Open validates every segment header (magic, version, checksum, first seq
// matching the name, one system identifier) and scans the active segment
// record by record. From the first frame that is short, has an impossible
// length, fails its checksum or breaks the sequence — a write torn by a crash,
// or garbage — the tail is cut back to the end of the last complete
// transaction or stand-alone record; a transaction without its COMMIT is cut
// too. The cut bytes are copied to "<segment>.broken" first. Before cutting,
// recovery makes sure the damage is a torn tail at all (below); if it is not,
// Open fails with a *CorruptError and changes nothing.
//
// Sealed segments are only header-checked on Open, to keep startup fast. A
// Reader that meets damage in a sealed segment, or below its Limit, returns a
// *CorruptError naming the file and byte offset (errors.Is(err, ErrCorrupt)).
//
// # Close state
//
// The scan decodes every record of the active segment (up to SegmentBytes),
// which made each restart of a large trail take hundreds of milliseconds.
// A clean Close (synced, no sticky error; an open transaction is dropped
// first) therefore leaves the file "trail.closed" (written as
// "trail.closed.tmp", fsynced, renamed): what the scan would learn — the
// active segment's first seq and length, the next seq, the last EndLSN,
// the schema map as SCHEMA payloads — and a CRC-32C of the segment's last
// 4 KiB, all under a CRC-32C of the file. Open adopts it only when it is
// intact, names the active segment, the segment still has the recorded
// length and ends in the recorded bytes, and a walk over the segment's
// frames (checksums only, no record decoded: a fraction of the scan's
// cost) finds every frame intact and as many as the state counts.
// Otherwise it scans as above, which tells a torn tail from corruption, so
// damage is found exactly as without the state. A successful Open removes
// the state and fsyncs the directory before anything can be appended, so
// a state is used at most once, by the first Open after the Close that
// wrote it; a failed Open leaves every file as it was.
//
// # Torn tail or corruption
//
// A crash can only damage what was written since the last fsync; every
// COMMIT before that is durable and may have been acknowledged to the
// source, so cutting it would lose data the source will never send again.
// The rule: damage at offset X of the active segment (the frame that should
// hold record seq S) is a torn tail only if no intact COMMIT of this segment
// follows it. Recovery scans every 8-byte aligned offset Y > X for a frame
// whose length fits in the file, whose payload is a COMMIT record of at most
// 64 KiB that decodes, whose checksum matches with this segment's seed, and
// whose seq s could follow there: S < s <= S + (Y-X)/16 (a frame takes at
// least 16 bytes). If there is one, the damage hit data that was probably
// synced and acknowledged: Open refuses with a *CorruptError naming the
// segment and X, and leaves every file untouched. Readers that are not
// following apply the same rule at the end of the active segment (so
// "cdcd trail dump" fails on such a trail instead of stopping quietly at
// the damage); a following reader keeps waiting at a bad frame, as it cannot
// tell damage from a write in progress.
//
// Why COMMIT, and not any intact frame: the active segment is written by
// appending to a fresh file (segments are created empty, never preallocated
// or reused), but Writer.Rollback and recovery truncate the file and
// overwrite the space, so after a crash a torn rewrite may expose the old
// bytes again. Those are always the frames of a transaction without its
// COMMIT (what a rollback drops) or a tail recovery already judged torn —
// intact frames, but never an intact COMMIT. Frames left in reused disk
// blocks by another file fail the checksum, which is seeded with the
// segment's first seq. And only a COMMIT matters: repair that cuts no intact
// COMMIT cuts no transaction that could have been acknowledged.
//
// What the rule cannot tell: damage that leaves nothing intact after it —
// a flipped bit in the very last COMMIT, or a lost write of the last synced
// block — looks exactly like a torn write and is cut (saved to .broken);
// capture then finds the slot's confirmed position ahead of the trail and
// stops. Conversely, a crash in the middle of a large group commit can
// persist later pages of the unsynced group but not earlier ones (the
// kernel and the disk write back in any order until the fsync returns),
// leaving a hole before intact COMMITs that were never acknowledged. That
// is refused too: the operator checks that the slot's confirmed_flush_lsn
// is not past the last COMMIT before the offset in the error, saves the
// segment, and truncates it at that offset (or removes the trail and
// re-captures). Refusing a repair that was safe costs a restart by hand;
// cutting acknowledged data would lose it for good.
//
// # Readers
//
// A Reader may follow a live Writer: at the end of the active segment it polls
// for more, treats a partially written frame as "not yet", and moves on to the
// next segment once that exists. With ReaderOptions.Limit set to
// Writer.Durable, a reader never reads past synced data, so it never sees a
// transaction the writer later rolls back, nor bytes a rollback rewrites.
package trail
