package postgres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcd-io/cdcd/pkg/sink"
)

// classify marks err retriable when a retry from the last position can cure
// it, and leaves it terminal otherwise. connLost reports that the connection
// is closed after the error: whatever the error was, the work in flight is
// gone with it, and a new connection may succeed.
//
// Retriable: connection loss and network errors, 08xxx connection
// exceptions, 40001 serialization_failure, 40P01 deadlock_detected, 57P01
// admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 53300
// too_many_connections. Terminal: everything else, e.g. 42P01
// undefined_table, 42703 undefined_column, 28P01/28000 authentication,
// constraint violations (23xxx), 57014 query_canceled (a statement timeout
// would only strike again).
func classify(err error, connLost bool) error {
	if err == nil || sink.IsRetriable(err) {
		return err
	}
	if retriable(err) || (connLost && !authFailed(err)) {
		return sink.Retriable(err)
	}
	return err
}

func retriable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The caller gave up (shutdown, or a deadline): nothing is wrong
		// with the work itself.
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return retriableCode(pgErr.Code)
	}
	var netErr net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return true
	case errors.As(err, &netErr):
		return true
	case pgconn.SafeToRetry(err), pgconn.Timeout(err):
		return true
	}
	var (
		connErr    *pgconn.ConnectError
		certErr    *tls.CertificateVerificationError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
	)
	if errors.As(err, &certErr) || errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &invalidErr) {
		return false // a certificate does not become valid by retrying
	}
	// A connect error without a server error is the network's.
	return errors.As(err, &connErr)
}

func retriableCode(code string) bool {
	switch code {
	case "40001", "40P01", "57P01", "57P02", "57P03", "53300":
		return true
	}
	return strings.HasPrefix(code, "08")
}

// authFailed reports an authentication or authorization failure, which no
// retry cures even though the server closes the connection after it.
func authFailed(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000")
}
