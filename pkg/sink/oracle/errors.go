package oracle

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"

	"github.com/cdcd-io/cdcd/pkg/sink"
)

// oraCoder is what godror's *OraErr offers: the ORA- number, and for array
// DML the offset of the failing row.
type oraCoder interface{ Code() int }

type oraOffsetter interface{ Offset() int }

var oraRE = regexp.MustCompile(`ORA-(\d{5})`)

// oraCode returns err's ORA- number, 0 when it has none.
func oraCode(err error) int {
	var oe oraCoder
	if errors.As(err, &oe) && oe.Code() != 0 {
		return oe.Code()
	}
	if m := oraRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// Retriable ORA- errors: a retry from the last position can cure them.
var retriableCodes = map[int]string{
	18:    "maximum sessions exceeded",
	20:    "maximum processes exceeded",
	28:    "session killed",
	51:    "timeout waiting for a resource",
	54:    "resource busy",
	60:    "deadlock",
	1012:  "not logged on",
	1013:  "user requested cancel",
	1033:  "initialization or shutdown in progress",
	1034:  "Oracle not available",
	1089:  "immediate shutdown in progress",
	1090:  "shutdown in progress",
	1092:  "instance terminated",
	1555:  "snapshot too old",
	2396:  "idle time exceeded",
	3113:  "end-of-file on communication channel",
	3114:  "not connected",
	3135:  "connection lost contact",
	3156:  "call timeout",
	4021:  "timeout waiting for a lock",
	4068:  "package state discarded",
	8177:  "cannot serialize access",
	12152: "unable to send break",
	12153: "not connected",
	12170: "connect timeout",
	12514: "listener does not know of the service",
	12516: "listener could not find a handler",
	12518: "listener could not hand off",
	12519: "no appropriate service handler",
	12520: "no handler for the server type",
	12521: "listener does not know of the instance",
	12528: "instances are blocking new connections",
	12537: "connection closed",
	12541: "no listener",
	12543: "destination host unreachable",
	12547: "lost contact",
	12560: "protocol adapter error",
	12571: "packet writer failure",
	25402: "transaction must roll back",
	25408: "cannot safely replay call",
	30006: "resource busy, wait timed out",
}

// classify marks err retriable when a retry from the last position can cure
// it: the retriable ORA- codes above, godror's lost connections (DPI-1010
// not connected, DPI-1080 connection closed) and a cancelled context.
// Everything else is terminal, among them ORA-00001 unique constraint,
// ORA-01400 NULL into NOT NULL, ORA-12899 value too large, ORA-01438 value
// larger than the precision, ORA-00904 invalid identifier, ORA-00942 table
// does not exist, ORA-01031 insufficient privileges, ORA-01017 bad
// credentials, a value no Oracle type holds exactly, and a missing Instant
// Client (DPI-1047).
func classify(err error) error {
	if err == nil || sink.IsRetriable(err) {
		return err
	}
	if retriable(err) {
		return sink.Retriable(err)
	}
	return err
}

func retriable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if _, ok := retriableCodes[oraCode(err)]; ok {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "DPI-1010") || strings.Contains(msg, "DPI-1080") || strings.Contains(msg, "driver: bad connection")
}

// missingClient reports godror's DPI-1047: the Instant Client library
// could not be loaded.
func missingClient(err error) bool {
	return err != nil && strings.Contains(err.Error(), "DPI-1047")
}

// ErrNoClient is returned (wrapped) when the Oracle Instant Client library
// cannot be loaded; its message says what to install.
var ErrNoClient = errors.New("the Oracle Instant Client (libclntsh.so) is not installed or not found: install Oracle Instant Client 19c or later (the basic or basic-light package), " +
	"then run ldconfig on its directory, put it in LD_LIBRARY_PATH, or set the sink's lib_dir")
