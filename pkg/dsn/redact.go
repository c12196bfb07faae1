package dsn

import (
	"cmp"
	"errors"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Mask is what Redact and RedactError put in place of a secret.
const Mask = "xxxxx"

// secret reports whether Redact hides the value of setting key. libpq's
// keys are case-sensitive, but a PASSWORD= typo still holds a password.
func secret(key string) bool {
	key = strings.ToLower(key)
	return key == "password" || key == "sslpassword"
}

// Redact returns dsn with its password (and sslpassword) replaced by Mask,
// for logs, errors and reports. Both forms are understood, with libpq's
// quoting and escapes. A DSN that does not parse is redacted
// conservatively: an ambiguous URI userinfo, a malformed query parameter or
// the unreadable rest of a keyword/value DSN is masked whole, so that no
// part of a password survives.
func Redact(dsn string) string {
	if isURI(dsn) {
		return redactURI(dsn)
	}
	kv, bad, _ := keywordValues(dsn)
	var b strings.Builder
	at := 0
	for _, s := range kv {
		if secret(s.key) {
			b.WriteString(dsn[at:s.start])
			b.WriteString(Mask)
			at = s.end
		}
	}
	if bad >= 0 {
		b.WriteString(dsn[at:bad])
		b.WriteString(Mask)
	} else {
		b.WriteString(dsn[at:])
	}
	return b.String()
}

func redactURI(dsn string) string {
	u := splitURI(dsn)
	var b strings.Builder
	b.WriteString(u.scheme)
	rest := u.rest
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		// An '@' past the userinfo: a password holding an unencoded '@',
		// '/' or '?' has spilled into the hosts, path or query. Mask
		// everything up to the last '@'.
		b.WriteString(Mask + "@")
		rest = rest[i+1:]
	} else if u.hasUser {
		b.WriteString(u.user)
		if u.hasPass {
			b.WriteString(":" + Mask)
		}
		b.WriteByte('@')
	}
	head, query, hasQuery := cutQuery(rest)
	b.WriteString(head)
	if !hasQuery {
		return b.String()
	}
	b.WriteByte('?')
	raw, keys := params(query)
	for i, p := range raw {
		if i > 0 {
			b.WriteByte('&')
		}
		k, _, ok := strings.Cut(p, "=")
		switch {
		case !ok || strings.Count(p, "=") > 1:
			// Not a parameter pgconn accepts: perhaps a piece of a
			// password holding an '&' or '='.
			b.WriteString(Mask)
		case secret(keys[i]):
			b.WriteString(k + "=" + Mask)
		default:
			b.WriteString(p)
		}
	}
	return b.String()
}

// RedactError returns err with each non-empty secret in its text replaced
// by Mask, and the DSN of a *pgconn.ParseConfigError in its chain shown as
// Redact shows it. The result unwraps to err, so errors.Is and errors.As see
// through it (a *pgconn.PgError stays reachable). It returns err itself when
// its text holds no secret, and nil for a nil err.
func RedactError(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	orig := msg
	var pce *pgconn.ParseConfigError
	if errors.As(err, &pce) {
		// pgconn masks a password in the DSN it could not parse, but its
		// masking is best effort: password=a\ b leaves " b". Render the
		// DSN with Redact instead. (The copy keeps pgconn's unexported
		// reason.)
		c := *pce
		c.ConnString = Redact(pce.ConnString)
		msg = strings.ReplaceAll(msg, pce.Error(), c.Error())
	}
	var pairs []string
	// Longest first, so that a secret holding another is masked whole.
	secrets = slices.Clone(secrets)
	slices.SortFunc(secrets, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			pairs = append(pairs, s, Mask)
		}
	}
	if pairs != nil {
		msg = strings.NewReplacer(pairs...).Replace(msg)
	}
	if msg == orig {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

// redactedError is an error with its text redacted.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
