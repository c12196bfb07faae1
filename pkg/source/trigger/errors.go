package trigger

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcd-io/cdcd/pkg/source"
)

// Conn is what this package needs of a connection: *pgx.Conn, pgx.Tx and
// *pgxpool.Pool all have it.
type Conn interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Sentinel errors, matched with errors.Is. All are terminal: retrying
// without a change on the source fails the same way.
var (
	// ErrNoKey is returned by Install for a table without a primary key or
	// replica identity index (unless Options.AllowKeyless).
	ErrNoKey = errors.New("table has no primary key")
	// ErrPrivilege is returned by Install when the role lacks a privilege
	// it needs; the message names the privilege and the GRANT.
	ErrPrivilege = errors.New("missing privilege")
	// ErrNotInstalled is returned by Reader.Poll, Ack and Start when the
	// change log is missing: never installed, uninstalled, or dropped by hand.
	ErrNotInstalled = errors.New("trigger capture is not installed")
	// ErrVersion is returned by Install on a server older than PostgreSQL 13.
	ErrVersion = errors.New("PostgreSQL 13 or newer is required")
	// ErrNoPosition is returned by Reader.Poll when called with the zero
	// Snapshot: the first position comes from Start or Export.
	ErrNoPosition = errors.New("no start position")
)

// pgCode returns the SQLSTATE of a server error, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// remedy is the command that installs (or repairs) trigger capture.
const remedy = "`cdcd trigger install --config <file>`"

// SQLSTATEs this package reacts to.
const (
	codeUndefinedTable     = "42P01"
	codeUndefinedFunction  = "42883"
	codeInsufficientPrivil = "42501"
	codeInvalidSchema      = "3F000"
)

// notInstalled maps "the change log or schema cdcd is missing" onto
// ErrNotInstalled with the remedy; other errors pass through.
func notInstalled(err error) error {
	switch pgCode(err) {
	case codeUndefinedTable, codeInvalidSchema:
		return fmt.Errorf("%w: table cdcd.change_log is missing (never installed, uninstalled, or dropped by hand); "+
			"run "+remedy+" again (writes to captured tables fail until then, so no change is lost): %w", ErrNotInstalled, err)
	}
	return err
}

// TerminalError marks an error that retrying cannot fix (the change log or
// triggers are missing, the trail and the source disagree, a privilege is
// missing): capture stops and reports it instead of reopening the source.
// Every other error of a Source (a lost connection, a server restart) is
// retriable: reopen and Start again from the trail's held position. It is
// the seam's (see package source), so capture needs no import of this one.
type TerminalError = source.TerminalError

// Terminal wraps err as a TerminalError; nil and terminal errors stay as
// they are.
func Terminal(err error) error {
	if err == nil || IsTerminal(err) {
		return err
	}
	return source.Terminal(err)
}

// IsTerminal reports whether err (or anything it wraps) is a TerminalError.
func IsTerminal(err error) bool { return source.IsTerminal(err) }

// terminalCodes are SQLSTATEs that reconnecting cannot cure.
var terminalCodes = map[string]bool{
	"28000":                true, // invalid_authorization_specification (pg_hba)
	"28P01":                true, // invalid_password
	"3D000":                true, // invalid_catalog_name: database does not exist
	codeInsufficientPrivil: true,
	codeUndefinedTable:     true, // cdcd.change_log dropped by hand (mapped to ErrNotInstalled)
	codeInvalidSchema:      true,
}

// classify marks err terminal when it is one of this package's sentinels or
// a SQLSTATE that reconnecting cannot cure; other errors stay retriable.
func classify(err error) error {
	if err == nil || IsTerminal(err) {
		return err
	}
	for _, s := range []error{ErrNoKey, ErrPrivilege, ErrNotInstalled, ErrVersion, ErrNoPosition} {
		if errors.Is(err, s) {
			return Terminal(err)
		}
	}
	if terminalCodes[pgCode(err)] {
		return Terminal(err)
	}
	return err
}
