// Package oracle is the Oracle sink, for Oracle Database 19c and later,
// Amazon RDS for Oracle and Oracle Autonomous Database: it applies batches
// of source transactions with array DML through database/sql and godror,
// and stores its position in the same Oracle transaction, so delivery is
// exactly-once.
//
// # Applying a batch
//
// Apply collapses the batch's changes per table and key into one final
// action per key (see plan.go), then runs, per table, one array execution
// per statement: DELETE by key, INSERT of rows not on the target, UPDATE of
// every non-key column for full rows that are there, and one UPDATE per set
// of sent columns for rows with unchanged TOASTed values (those columns are
// left out of the SET). A 10,000-row batch of inserts, updates, deletes
// and unchanged-TOAST updates on one table is therefore six round trips
// with the checkpoint and the COMMIT (TestStatementsPerBatch). MERGE is used
// only where the row may already exist: snapshot rows, an INSERT that met
// ORA-00001, and an UPDATE that found fewer rows than it was given. A
// TRUNCATE is applied as DELETE FROM (Oracle's TRUNCATE is DDL and would
// commit). Rows whose CLOB, NCLOB, BLOB or JSON values exceed
// Config.LOBInlineBytes go in a separate execution of the same statement,
// bound as temporary LOBs, so no value is cut or dropped.
//
// Values arrive in PostgreSQL's text form and are bound as typed arrays
// chosen from the target column's Oracle type (values.go): NUMBER from
// integers (int64) or numeric (godror.Number, checked to fit exactly:
// at most 38 significant digits, and within the column's precision and
// scale, which Oracle would otherwise round to silently), BINARY_FLOAT/DOUBLE with NaN and ±Infinity, DATE and
// TIMESTAMP [WITH TIME ZONE] as UTC times, INTERVAL literals, RAW/BLOB from
// bytea and uuid, and the PostgreSQL text for character, CLOB and JSON
// columns. A value the target cannot hold exactly is a terminal error
// naming the table, the row's key and the column — never rounded or cut.
//
// # Transactions and position (crash safety)
//
//  1. The first Apply begins an explicit transaction (godror commits every
//     execution outside one).
//  2. The batch's statements run in it; a Partial batch leaves it open for
//     the next Apply.
//  3. The sink's checkpoint row is MERGEd in the same transaction.
//  4. COMMIT makes rows and position durable together. A crash before it
//     loses both and apply resumes from the previous position; an error
//     from COMMIT leaves the outcome unknown, and the retry reads Position,
//     which tells.
//
// # Checkpoint table
//
// CDCD_CHECKPOINT (Config.CheckpointTable, in Config.Schema), created by New
// when missing:
//
//	NAME        VARCHAR2(128 CHAR)  the sink's name, primary key
//	SEQ         NUMBER(20)          trail sequence number of the last applied COMMIT
//	END_LSN     VARCHAR2(17 BYTE)   that transaction's source end LSN, "16/B374D848"
//	UPDATED_AT  TIMESTAMP WITH TIME ZONE  when the row was last written
//
// A DBA may create it beforehand (the DDL is checkpointDDL in sql.go) and
// grant the sink user SELECT, INSERT, UPDATE on it.
//
// # Errors
//
// Errors name the sink and its target as user@connectString, never the
// password. ORA- codes are classified in errors.go: lost connections,
// deadlocks (ORA-00060), busy resources (ORA-00054, ORA-30006), snapshot
// too old (ORA-01555) and instance shutdowns are sink.Retriable; the apply
// worker then recreates the Sink and retries from Position. Constraint
// violations, values too large, invalid identifiers, missing tables and
// privileges are terminal, reported with the table, the row's key (godror
// reports which row of an array failed) and the column Oracle names.
//
// # Instant Client
//
// godror needs cgo to build and loads the Oracle Instant Client
// (libclntsh.so) at run time only: cdcd builds and runs without it, and New
// returns ErrNoClient, saying what to install, when an Oracle sink is
// configured on a host without it.
package oracle
