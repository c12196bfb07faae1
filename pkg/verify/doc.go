// Package verify compares the tables a pipeline replicates between the
// source and each PostgreSQL target, through the table mapping (renamed
// tables and columns, excluded columns, row filters): row count and a
// checksum per key range, ranges in parallel, differing ranges bisected down
// to the differing keys, and optionally re-copied (Repair).
//
// # Exact while replication runs
//
// Comparing two live databases row by row gives false alarms: the source
// moves on while the target is read, and the target lags. verify instead
// pins both sides at the same source position C:
//
//  1. It asks the running daemon to hold every PostgreSQL sink at L0, the
//     source's current WAL position (apply.Hold: the sink applies no
//     transaction whose commit starts at or past the boundary). Anything a
//     sink applied before the hold was set committed before step 2 began.
//  2. It creates a temporary logical slot exporting its snapshot, whose
//     consistent point is C ≥ L0: the snapshot sees exactly the
//     transactions whose commit record ends at or before C.
//  3. It moves the holds to C and commits a logical message (whose commit is
//     past C), so every sink applies exactly the transactions that committed
//     before C and then stands still at a whole-transaction boundary.
//  4. Once every sink reports the hold reached, it exports a snapshot of
//     each target (pg_export_snapshot) and releases the holds: replication
//     goes on while the comparison reads the two snapshots, both at C.
//
// With Repair the holds are kept until the differing ranges are re-copied
// from the source snapshot, so the stream resumes exactly where the repaired
// rows stand.
//
// Without a running daemon (Config.Daemon empty) nothing applies to the
// targets: verify compares the targets as they are with the source as it is
// now, which is exact once the source takes no writes (fenced for a
// cutover) and every sink has applied everything.
//
// # Canonical values
//
// Values are compared by their text form under pinned session settings
// (DateStyle ISO, IntervalStyle postgres, TimeZone UTC, extra_float_digits
// 3, bytea_output hex, lc_monetary C), so a value whose text depends on a
// setting is not a false mismatch, and a target column of another but
// text-equal type (varchar for text) is not either. A range's checksum is
// the sum of the first 64 bits of each row's md5(ROW(columns)::text): order
// independent, so neither side sorts.
package verify
