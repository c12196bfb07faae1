package dsn

// TEMPORARY until the h4 branch lands: replaced by its pkg/dsn.
import (
	"net/url"
	"strings"
)

func WithPassword(dsn, password string) (string, error) {
	if password == "" {
		return dsn, nil
	}
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		name := ""
		if u.User != nil {
			name = u.User.Username()
		}
		u.User = url.UserPassword(name, password)
		return u.String(), nil
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return dsn + " password='" + r.Replace(password) + "'", nil
}
