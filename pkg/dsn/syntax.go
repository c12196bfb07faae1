package dsn

import (
	"errors"
	"strings"
)

// A setting is one key=value of a DSN as written. start and end delimit the
// value's raw text in the DSN, quotes included, so that it can be replaced.
type setting struct {
	key, val   string
	start, end int
	// dangling: a bare value ended the DSN with a lone backslash, which
	// libpq drops; text appended after it would be escaped by it.
	dangling bool
}

// isSpace is libpq's notion of white space in a keyword/value DSN.
func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\v', '\f':
		return true
	}
	return false
}

func skipSpace(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

// isURI reports whether pgconn reads s as a URI rather than keyword/value.
func isURI(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// keywordValues splits a keyword/value DSN into its settings, in order, with
// pgconn's rules (parseKeywordValueSettings): a later key overrides an
// earlier one; a value is either bare, ending at white space, with a
// backslash escaping the next byte, or single-quoted, with a backslash
// escaping the next byte (so \' and \\). On a syntax error it returns the
// settings before it and bad, the offset where the unreadable text starts.
func keywordValues(s string) (out []setting, bad int, err error) {
	i := skipSpace(s, 0)
	for i < len(s) {
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return out, i, errors.New("invalid keyword/value")
		}
		key := strings.Trim(s[i:i+eq], " \t\n\r\v\f")
		if key == "" || strings.ContainsAny(key, " \t\n\r\v\f") {
			return out, i, errors.New("invalid keyword/value")
		}
		j := skipSpace(s, i+eq+1)
		start := j
		var raw string
		dangling := false
		switch {
		case j == len(s):
		case s[j] != '\'':
			for ; j < len(s) && !isSpace(s[j]); j++ {
				if s[j] == '\\' {
					j++
					if j == len(s) {
						dangling = true
						break
					}
				}
			}
			raw = s[start:j]
		default:
			j++
			for ; j < len(s) && s[j] != '\''; j++ {
				if s[j] == '\\' {
					j++
				}
			}
			if j >= len(s) {
				return out, start, errors.New("unterminated quoted string")
			}
			j++ // the closing quote
			raw = s[start+1 : j-1]
		}
		if key == "dbname" {
			key = "database"
		}
		out = append(out, setting{key: key, val: unescape(raw), start: start, end: j, dangling: dangling})
		i = skipSpace(s, j)
	}
	return out, -1, nil
}

// unescape applies libpq's backslash rule to a keyword/value value: a
// backslash is dropped and the byte after it taken literally.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			if i == len(s) {
				break
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// quote writes v as a single-quoted keyword/value value.
func quote(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(v) + "'"
}

// A uri is a URI DSN cut where pgconn's parseURLSettings cuts it, raw.
type uri struct {
	scheme  string // "postgres://" or "postgresql://"
	hasUser bool   // an '@' ended a userinfo
	user    string // the userinfo up to its first ':'
	hasPass bool   // the userinfo has a ':'
	pass    string // the userinfo after its first ':'
	rest    string // hosts, path and query
}

func splitURI(s string) uri {
	u := uri{scheme: "postgresql://"}
	rest, ok := strings.CutPrefix(s, u.scheme)
	if !ok {
		u.scheme = "postgres://"
		rest = strings.TrimPrefix(s, u.scheme)
	}
	// Like libpq, only a '/' ends the search for the userinfo's '@'.
	if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
		u.hasUser = true
		u.user, u.pass, u.hasPass = strings.Cut(rest[:i], ":")
		rest = rest[i+1:]
	}
	u.rest = rest
	return u
}

// cutQuery splits the hosts-and-path part of a URI from its query. A
// bracketed IPv6 host may hold a '?'.
func cutQuery(rest string) (head, query string, hasQuery bool) {
	path := false
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case '[':
			if !path {
				if j := strings.IndexByte(rest[i:], ']'); j >= 0 {
					i += j
				}
			}
		case '/':
			path = true
		case '?':
			return rest[:i], rest[i+1:], true
		}
	}
	return rest, "", false
}

// params splits a URI query into its key=value pairs (raw), and the keys
// decoded.
func params(query string) (raw []string, keys []string) {
	if query == "" {
		return nil, nil
	}
	raw = strings.Split(query, "&")
	keys = make([]string, len(raw))
	for i, p := range raw {
		k, _, _ := strings.Cut(p, "=")
		keys[i] = decode(k)
	}
	return raw, keys
}

// decode percent-decodes a URI component leniently: leading and trailing
// spaces dropped, a '%' not followed by two hex digits kept as it is.
func decode(s string) string {
	s = strings.Trim(s, " ")
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				b.WriteByte(hi<<4 | lo)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// settings returns the DSN's settings as written, later ones overriding
// earlier ones, read leniently: what is unreadable is left out.
func settings(s string) map[string]string {
	m := map[string]string{}
	if isURI(s) {
		u := splitURI(s)
		if u.hasUser {
			if u.user != "" {
				m["user"] = decode(u.user)
			}
			if u.hasPass && u.pass != "" {
				m["password"] = decode(u.pass)
			}
		}
		head, query, _ := cutQuery(u.rest)
		if h, _, _ := strings.Cut(head, "/"); h != "" {
			m["host"] = decode(h) // with ports; Host drops them
		}
		raw, keys := params(query)
		sslTrue := false
		for i, k := range keys {
			_, v, _ := strings.Cut(raw[i], "=")
			v = decode(v)
			switch {
			case k == "ssl":
				// ssl=true is an alias of sslmode=require when no
				// sslmode follows it.
				sslTrue = v == "true"
				if sslTrue {
					continue
				}
			case k == "sslmode":
				sslTrue = false
			case k == "dbname":
				k = "database"
			}
			m[k] = v
		}
		if sslTrue {
			m["sslmode"] = "require"
		}
		return m
	}
	kv, _, _ := keywordValues(s)
	for _, st := range kv {
		m[st.key] = st.val
	}
	return m
}
