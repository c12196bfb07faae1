package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcd-io/cdcd/pkg/source"
)

// TerminalError marks an error that retrying cannot fix; it is the seam's
// (see package source).
type TerminalError = source.TerminalError

// Terminal wraps err as a TerminalError.
func Terminal(err error) error { return source.Terminal(err) }

// IsTerminal reports whether err (or anything it wraps) is terminal.
func IsTerminal(err error) bool { return source.IsTerminal(err) }

// terminalCodes are SQLSTATEs that reconnecting cannot cure.
var terminalCodes = map[string]bool{
	"28000": true, // invalid_authorization_specification (pg_hba, no REPLICATION)
	"28P01": true, // invalid_password
	"3D000": true, // invalid_catalog_name: database does not exist
	"42501": true, // insufficient_privilege
	"42704": true, // undefined_object: slot or publication missing
	"42710": true, // duplicate_object
	"0A000": true, // feature_not_supported
	"55000": true, // object_not_in_prerequisite_state: wal_level, invalidated slot
}

// classify marks err terminal when its SQLSTATE is one reconnecting cannot
// cure (terminalCodes); every other error (network errors, admin shutdown, a
// slot still held by a dying session) is returned unchanged and so retried.
func classify(err error) error {
	if err == nil || IsTerminal(err) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && terminalCodes[pgErr.Code] {
		return Terminal(err)
	}
	return err
}
