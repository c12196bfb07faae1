// Package decode decodes PostgreSQL's pgoutput logical replication protocol,
// version 1, into cdcd's change model, and the streaming of in-progress
// transactions of version 2.
//
// The input is the WALData of each XLogData message of a replication
// connection started with
//
//	START_REPLICATION SLOT s LOGICAL x/x (proto_version '1', publication_names 'p' [, messages 'true'] [, binary 'true'])
//
// The message layouts are PostgreSQL's "Logical Replication Message Formats"
// (protocol v1, and v2's streaming; no two-phase). Every integer is big-endian and
// every string NUL-terminated. Byte offsets in error messages count from the
// message type byte.
//
//	Begin    'B' Int64 final LSN, Int64 commit time, Int32 xid
//	Commit   'C' Int8 flags, Int64 commit LSN, Int64 end LSN, Int64 commit time
//	Origin   'O' Int64 origin commit LSN, String name
//	Relation 'R' Int32 OID, String namespace, String name, Int8 replica identity,
//	             Int16 n, n × (Int8 flags (1 = key), String name, Int32 type OID, Int32 typmod)
//	Type     'Y' Int32 OID, String namespace, String name
//	Insert   'I' Int32 relation OID, 'N' TupleData
//	Update   'U' Int32 relation OID, ['K' TupleData | 'O' TupleData], 'N' TupleData
//	Delete   'D' Int32 relation OID, 'K' TupleData | 'O' TupleData
//	Truncate 'T' Int32 n, Int8 options (1 = CASCADE, 2 = RESTART IDENTITY), n × Int32 OID
//	Message  'M' Int8 flags (1 = transactional), Int64 LSN, String prefix, Int32 n, n bytes
//
//	TupleData: Int16 n, n × ('n' | 'u' | 't' Int32 len, bytes | 'b' Int32 len, bytes)
//
// Protocol v2 (proto_version '2', streaming 'on', PostgreSQL 14+) sends a
// large transaction while it runs, in segments, interleaved with other
// transactions:
//
//	Stream Start  'S' Int32 xid, Int8 first segment (1) or not (0)
//	Stream Stop   'E'
//	Stream Commit 'c' Int32 xid, Int8 flags, Int64 commit LSN, Int64 end LSN, Int64 commit time
//	Stream Abort  'A' Int32 xid, Int32 subtransaction xid
//
// Between Stream Start and Stream Stop, Insert, Update, Delete, Truncate,
// Relation, Type and Message carry an Int32 xid (of the subtransaction that
// made the change) right after the type byte. The Decoder does not decode
// them there: it returns them as EventStreamData for the caller to spool,
// and decodes them at the Stream Commit between Replay and EndReplay, as the
// messages of an ordinary transaction. A Stream Abort whose subtransaction
// xid differs from its xid drops only that subtransaction's messages.
//
// Times are microseconds since 2000-01-01 UTC. Column kinds map to
// change.ValueKind: 'n' NULL, 't' text, 'b' binary, 'u' unchanged TOASTed
// value; in an old-key ('K') tuple a non-key column comes as 'n' but means
// "not sent" and becomes change.ValueAbsent.
//
// Decoding is strict: a message that ends early, has bytes after its last
// field, names an unknown relation, or arrives in the wrong transaction state
// is an error, never a guess — a CDC stream that is misread loses data
// silently. Decode is the engine's hot path: an insert costs three
// allocations (the Change, its Row, one buffer holding the bytes of every
// column), an update with an old tuple the same three.
//
// A Decoder keeps the session's state: relations by OID (each Relation
// message makes a new immutable *change.Relation; changes decoded earlier keep
// the one they were decoded with), type names from Type messages, and the
// transaction in progress.
package decode
