package source

import "errors"

// TerminalError marks an error that retrying cannot fix (bad credentials, a
// missing slot or change log, a misconfiguration): capture stops instead of
// reconnecting. Every other error from a Source is retried with backoff.
type TerminalError struct{ Err error }

func (e *TerminalError) Error() string { return e.Err.Error() }
func (e *TerminalError) Unwrap() error { return e.Err }

// Terminal wraps err as a TerminalError (nil stays nil).
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return &TerminalError{Err: err}
}

// IsTerminal reports whether err (or anything it wraps) is terminal.
func IsTerminal(err error) bool {
	var t *TerminalError
	return errors.As(err, &t)
}
