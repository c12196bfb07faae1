package pgtest

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// confFile holds the harness's settings. postgresql.conf from initdb includes it at
// its end, so these win over initdb's; a standby's copy is rewritten from scratch.
const confFile = "pgtest.conf"

// defaultConf returns the settings every cluster gets unless [Options.Conf]
// overrides them. listen_addresses, port and unix_socket_directories are always
// set by the harness.
func defaultConf() map[string]string {
	return map[string]string{
		"wal_level":             "logical",
		"max_wal_senders":       "20",
		"max_replication_slots": "20",
		"max_connections":       "100",
		"shared_buffers":        "128MB",
		// Throwaway clusters: durability against machine crashes buys nothing.
		// synchronous_commit stays on: with fsync off it costs one write(2) per
		// commit, and it keeps acknowledged commits across a server crash (Kill),
		// which crash tests rely on; off would lose up to 3*wal_writer_delay.
		"fsync": "off",
		// Only matter on a standby; harmless on a primary, and a primary that is
		// later cloned passes them on.
		"hot_standby":          "on",
		"hot_standby_feedback": "on",
		// The server log goes to stderr, which the harness sends to server.log.
		"logging_collector": "off",
		"log_line_prefix":   "%m [%p] %q%a ",
		"lc_messages":       "C",
		"datestyle":         "iso, mdy",
		"timezone":          "UTC",
	}
}

// quoteConf renders a value for postgresql.conf. Every setting accepts a quoted
// value, so values are quoted unless the caller already did.
func quoteConf(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

func writeConf(dataDir string, conf map[string]string) error {
	var b strings.Builder
	b.WriteString("# Written by github.com/cdcd-io/cdcd/internal/pgtest.\n")
	for _, k := range slices.Sorted(maps.Keys(conf)) {
		fmt.Fprintf(&b, "%s = %s\n", k, quoteConf(conf[k]))
	}
	return writeServerFile(filepath.Join(dataDir, confFile), b.String())
}

// hbaConf trusts everyone on the socket and on 127.0.0.1, including replication
// connections, which "all" does not cover.
const hbaConf = `# Written by github.com/cdcd-io/cdcd/internal/pgtest.
local all         all              trust
local replication all              trust
host  all         all 127.0.0.1/32 trust
host  replication all 127.0.0.1/32 trust
`

// hbaConfPassword is hbaConf with password authentication for TCP connections
// other than replication ones.
const hbaConfPassword = `# Written by github.com/cdcd-io/cdcd/internal/pgtest.
local all         all              trust
local replication all              trust
host  all         all 127.0.0.1/32 scram-sha-256
host  replication all 127.0.0.1/32 trust
`

// configure points a fresh initdb data directory at confFile and writes
// pg_hba.conf, asking TCP clients for a password when password is set.
func configure(dataDir string, password bool) error {
	f, err := os.OpenFile(filepath.Join(dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "\ninclude = %s\n", quoteConf(confFile))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("editing postgresql.conf: %w", err)
	}
	hba := hbaConf
	if password {
		hba = hbaConfPassword
	}
	return writeServerFile(filepath.Join(dataDir, "pg_hba.conf"), hba)
}

// writeServerFile writes a file the server reads, owned by the server user.
func writeServerFile(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return err
	}
	return chownR(path)
}

// clusterConf adds the harness's own settings to conf.
func clusterConf(base map[string]string, port int, sockDir string) map[string]string {
	conf := maps.Clone(base)
	conf["listen_addresses"] = "127.0.0.1"
	conf["port"] = strconv.Itoa(port)
	conf["unix_socket_directories"] = sockDir
	return conf
}
