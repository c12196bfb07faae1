package oracle

import (
	"errors"
	"fmt"
)

// DefaultCheckpointTable is the table the sink keeps its positions in when
// Config.CheckpointTable is empty, in the sink's schema.
const DefaultCheckpointTable = "CDCD_CHECKPOINT"

// DefaultLOBInlineBytes is Config.LOBInlineBytes's default.
//
// godror sizes a string array bind at four bytes per character of its
// longest value, and a bind buffer past 4000 bytes is a LONG bind to Oracle,
// which a VARCHAR2 or MERGE may refuse (ORA-01461): 1000 bytes keeps inline
// LOB values within 4000 bytes, and larger ones go the temporary-LOB way,
// which works for any size.
const DefaultLOBInlineBytes = 1000

// Config configures a Sink. The zero value of every optional field means the
// default stated on it.
type Config struct {
	// Name is the sink's name: the key of its row in the checkpoint table,
	// and the name in its errors. Required.
	Name string
	// DSN is the godror connection string: `user=cdc password=…
	// connectString="host:1521/service"` (logfmt), or
	// oracle://user:password@host:1521/service, or a TNS alias or Easy
	// Connect Plus string as connectString (Autonomous Database: a
	// tnsnames.ora alias and configDir= for the wallet). Required.
	DSN string
	// Password, when set, replaces the DSN's password. Default: the DSN's.
	Password string
	// LibDir is the directory holding the Oracle Instant Client
	// (libclntsh.so). Default "": the dynamic loader's search path
	// (LD_LIBRARY_PATH, ldconfig).
	LibDir string
	// Schema is the Oracle schema (owner) of every target table and of the
	// checkpoint table, named by the Case rule. Default "": the session's
	// current schema (the connecting user).
	Schema string
	// CheckpointTable is the table holding one position row per sink name,
	// created when missing. Default DefaultCheckpointTable.
	CheckpointTable string
	// Case maps PostgreSQL names to Oracle names. Default CaseUpper.
	Case Case
	// EmptyString is what a PostgreSQL '' becomes, since Oracle stores ''
	// as NULL: "" (the default) writes NULL, anything else writes that
	// placeholder (e.g. a single space). Either way it is a choice, written
	// down in the README, never a silent surprise: with the default, a ''
	// in a key column, or in a NOT NULL column, is an error naming it.
	EmptyString string
	// LOBInlineBytes is the size up to which CLOB and BLOB values are bound
	// inline in the array statements; a row with a larger LOB value goes in
	// a separate execution of the same statement whose LOB columns are bound
	// as temporary LOBs. Default DefaultLOBInlineBytes (1000).
	LOBInlineBytes int
}

// Validate checks the configuration without connecting.
func (c Config) Validate() error {
	if c.Name == "" {
		return errors.New("oracle sink: a name is required")
	}
	if c.DSN == "" {
		return fmt.Errorf("oracle sink %q: a dsn is required (user=… connectString=host:port/service)", c.Name)
	}
	switch c.Case {
	case "", CaseUpper, CasePreserve:
	default:
		return fmt.Errorf("oracle sink %q: case %q: use upper or preserve", c.Name, c.Case)
	}
	if c.LOBInlineBytes < 0 || c.LOBInlineBytes > 32767 {
		return fmt.Errorf("oracle sink %q: lob_inline_bytes %d: want 0 (default 1000) to 32767", c.Name, c.LOBInlineBytes)
	}
	if _, err := c.Case.ident(c.Name); err != nil {
		return fmt.Errorf("oracle sink %q: %w", c.Name, err)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.CheckpointTable == "" {
		c.CheckpointTable = DefaultCheckpointTable
	}
	if c.Case == "" {
		c.Case = CaseUpper
	}
	if c.LOBInlineBytes == 0 {
		c.LOBInlineBytes = DefaultLOBInlineBytes
	}
	return c
}
