package dsn

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// WithPassword returns dsn with its password set to password, byte for
// byte, whatever bytes it holds; pgconn parses the result to the same
// configuration as dsn but for the password. An empty password returns dsn
// unchanged.
//
// In a URI the userinfo's password is set, percent-encoded, and any
// password query parameter (which would override it) dropped. In a
// keyword/value DSN a quoted password setting is appended: libpq lets a
// later key override an earlier one.
//
// It fails when password holds a NUL byte (no connection string can carry
// one) or a keyword/value dsn does not parse; its errors never hold either
// password.
func WithPassword(dsn, password string) (string, error) {
	if password == "" {
		return dsn, nil
	}
	if strings.IndexByte(password, 0) >= 0 {
		return "", errors.New("set the DSN's password: the password holds a NUL byte, which no connection string can carry")
	}
	if isURI(dsn) {
		return uriWithPassword(dsn, password), nil
	}
	kv, _, err := keywordValues(dsn)
	if err != nil {
		return "", fmt.Errorf("set the password of DSN %s: %w", Redact(dsn), err)
	}
	if n := len(kv); n > 0 && kv[n-1].dangling {
		// libpq drops a backslash that ends the DSN; left there, it
		// would escape the space before the password.
		dsn = dsn[:len(dsn)-1]
	}
	return dsn + " password=" + quote(password), nil
}

func uriWithPassword(dsn, password string) string {
	u := splitURI(dsn)
	var b strings.Builder
	b.WriteString(u.scheme)
	// The raw user is kept as written; url.UserPassword percent-encodes
	// every byte of the password that pgconn would not take literally,
	// ':', '@', '/' and '?' included.
	b.WriteString(u.user)
	b.WriteString(url.UserPassword("", password).String())
	b.WriteByte('@')
	head, query, hasQuery := cutQuery(u.rest)
	b.WriteString(head)
	if !hasQuery {
		return b.String()
	}
	raw, keys := params(query)
	var kept []string
	for i, p := range raw {
		if keys[i] != "password" {
			kept = append(kept, p)
		}
	}
	if len(kept) > 0 || len(raw) == 0 {
		b.WriteString("?" + strings.Join(kept, "&"))
	}
	return b.String()
}
