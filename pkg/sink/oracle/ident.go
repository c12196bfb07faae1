package oracle

import (
	"fmt"
	"strings"
	"unicode"
)

// maxIdentBytes is Oracle's identifier limit (12.2 and later): 128 bytes.
const maxIdentBytes = 128

// Case says how PostgreSQL names become Oracle names.
type Case string

// The identifier case rules.
const (
	// CaseUpper (the default) upper-cases names that PostgreSQL folded to
	// lower case (lower-case letters, digits, _ and $ only, not starting with
	// a digit), so order_id becomes ORDER_ID, which Oracle SQL reaches
	// unquoted; any other name ("Mixed Case", a name with a space) was quoted
	// on PostgreSQL and is kept exactly.
	CaseUpper Case = "upper"
	// CasePreserve keeps every name exactly as on PostgreSQL (order_id stays
	// "order_id", reachable only quoted on Oracle).
	CasePreserve Case = "preserve"
)

// ident maps a PostgreSQL name to its Oracle name by the case rule and
// checks it fits Oracle: at most 128 bytes, no double quote, no NUL.
func (c Case) ident(name string) (string, error) {
	if c != CasePreserve && folded(name) {
		name = strings.ToUpper(name)
	}
	switch {
	case name == "":
		return "", fmt.Errorf("an empty name cannot be an Oracle identifier")
	case len(name) > maxIdentBytes:
		return "", fmt.Errorf("name %q is %d bytes: Oracle identifiers hold at most %d bytes; rename it on the target with a mapping", name, len(name), maxIdentBytes)
	case strings.ContainsAny(name, "\"\x00"):
		return "", fmt.Errorf("name %q contains a double quote or NUL, which Oracle identifiers cannot hold; rename it with a mapping", name)
	}
	return name, nil
}

// folded reports whether name is how PostgreSQL stores an unquoted
// identifier: lower-case letters, digits, _ and $, not starting with a digit.
func folded(name string) bool {
	for i, r := range name {
		switch {
		case r == '_' || (r >= 'a' && r <= 'z'):
		case (r >= '0' && r <= '9') || r == '$':
			if i == 0 {
				return false
			}
		case r > unicode.MaxASCII && unicode.IsLower(r):
		default:
			return false
		}
	}
	return name != ""
}

// quote returns name as a quoted Oracle identifier. Every generated
// statement quotes, so reserved words (ORDER, DATE, LEVEL) are safe as names.
func quote(name string) string { return `"` + name + `"` }
