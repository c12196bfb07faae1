package pgtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// startTimeout bounds StartT and StartStandbyT, which have no context of their own.
	startTimeout = 2 * time.Minute
	// stopTimeout is how long Stop waits for a fast shutdown before an immediate one.
	stopTimeout = 30 * time.Second
)

// Options configures a cluster. The zero value starts a PostgreSQL 15 primary with
// the defaults described on each field.
type Options struct {
	// Version is the server's major version. Default 15; for a standby, the
	// primary's version (a different one is an error).
	Version Version
	// Conf holds extra postgresql.conf settings, which override the harness's
	// defaults: wal_level=logical, max_wal_senders=20, max_replication_slots=20,
	// max_connections=100, shared_buffers=128MB, fsync=off, hot_standby=on,
	// hot_standby_feedback=on, timezone=UTC; everything else is PostgreSQL's
	// default (synchronous_commit=on, full_page_writes=on). Values are quoted for
	// postgresql.conf unless already in single quotes. listen_addresses, port and
	// unix_socket_directories cannot be overridden. A standby starts from its
	// primary's settings, then applies its own Conf. Default none.
	Conf map[string]string
	// Name labels the cluster in its temporary directory name, its errors and, for
	// a standby, its application_name on the primary. Default "primary" or "standby".
	Name string
	// Password, when set, becomes the superuser postgres's password and
	// non-replication TCP connections must authenticate with it
	// (scram-sha-256); [Cluster.DSN] then carries it. The Unix socket and
	// replication connections stay trusted. A standby inherits its primary's
	// password. Default "": every connection is trusted.
	Password string
}

// Cluster is a running throwaway PostgreSQL server started by [Start] or
// [Cluster.StartStandby]. Its methods are safe for concurrent use.
type Cluster struct {
	// Version is the server's major version.
	Version Version
	// Port is the TCP port on 127.0.0.1 the server listens on.
	Port int
	// DataDir is the server's data directory.
	DataDir string
	// Dir is the temporary directory holding DataDir, the server log and the Unix
	// socket; Stop removes it.
	Dir string
	// Name is the label from [Options.Name].
	Name string

	password string // Options.Password
	binDir   string
	conf     map[string]string // settings in pgtest.conf, without the harness's own
	slot     string            // physical slot on the primary, for a standby

	mu      sync.Mutex
	proc    *postmaster // nil when not running
	removed bool
}

// Start creates a cluster with initdb in a new temporary directory, starts it on a
// free port and waits until it accepts connections. The caller must Stop it. On
// failure nothing is left behind, and the error carries the end of the server log.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Version == 0 {
		opts.Version = V15
	}
	if opts.Name == "" {
		opts.Name = "primary"
	}
	c, err := newCluster(opts)
	if err != nil {
		return nil, err
	}
	c.password = opts.Password
	if err := c.initdb(ctx); err != nil {
		return nil, c.fail(err)
	}
	c.conf = defaultConf()
	maps.Copy(c.conf, opts.Conf)
	if err := configure(c.DataDir, c.password != ""); err != nil {
		return nil, c.fail(err)
	}
	if err := c.startFresh(ctx); err != nil {
		return nil, c.fail(err)
	}
	return c, nil
}

// StartT is [Start] for tests: it fails t with the server log on error and stops the
// cluster when the test ends.
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return c
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// newCluster makes the temporary directory, owned by the server user.
func newCluster(opts Options) (*Cluster, error) {
	bin, err := serverBinDir(opts.Version)
	if err != nil {
		return nil, err
	}
	label := unsafeName.ReplaceAllString(opts.Name, "_")
	if len(label) > 20 { // keeps the socket path under its 107-byte limit
		label = label[:20]
	}
	dir, err := os.MkdirTemp("", fmt.Sprintf("cdcd-pg%d-%s-", opts.Version, label))
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c := &Cluster{
		Version: opts.Version,
		DataDir: filepath.Join(dir, "data"),
		Dir:     dir,
		Name:    opts.Name,
		binDir:  bin,
	}
	if err := chownR(dir); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	return c, nil
}

// fail removes what a failed Start created and adds the log tail to err.
func (c *Cluster) fail(err error) error {
	err = fmt.Errorf("pgtest: starting PostgreSQL %d cluster %q: %w", c.Version, c.Name, err)
	if tail := c.LogTail(30); tail != "" {
		err = fmt.Errorf("%w\n--- server log (%s) ---\n%s", err, c.logPath(), tail)
	}
	if serr := c.Stop(); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

func (c *Cluster) logPath() string { return filepath.Join(c.Dir, "server.log") }

func (c *Cluster) initdb(ctx context.Context) error {
	args := []string{"-D", c.DataDir, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C",
		"--no-sync", "--no-instructions"}
	if c.password != "" {
		pwfile := filepath.Join(c.Dir, "pwfile")
		if err := writeServerFile(pwfile, c.password+"\n"); err != nil {
			return fmt.Errorf("writing the password file: %w", err)
		}
		defer os.Remove(pwfile)
		args = append(args, "--pwfile="+pwfile)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, "initdb"), args...)
	if err := asServerUser(cmd, c.Dir); err != nil {
		return err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// startFresh picks a free port, writes pgtest.conf and starts the server, trying
// other ports if the chosen one was taken in the meantime.
func (c *Cluster) startFresh(ctx context.Context) error {
	var err error
	for range 5 {
		if c.Port, err = freePort(); err != nil {
			return err
		}
		if err = writeConf(c.DataDir, clusterConf(c.conf, c.Port, c.Dir)); err != nil {
			return fmt.Errorf("writing %s: %w", confFile, err)
		}
		err = c.start(ctx)
		if err == nil || !strings.Contains(c.LogTail(10), "could not bind") {
			return err
		}
	}
	return err
}

// freePort asks the kernel for a port that is free right now on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Stop shuts the server down (a fast shutdown, like pg_ctl stop -m fast) and
// removes its temporary directory. It never touches a server it did not start and
// may be called more than once.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.stopLocked(syscall.SIGINT)
	if !c.removed && os.Getenv("CDCD_PGTEST_KEEP") == "" {
		if rerr := os.RemoveAll(c.Dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("pgtest: removing %s: %w", c.Dir, rerr))
		}
		c.removed = true
	}
	return err
}

// Kill simulates a crash: it SIGKILLs the postmaster and all its backends at once
// and waits until they are gone. The data directory stays; [Cluster.Restart]
// starts the server again, which then runs crash recovery.
func (c *Cluster) Kill() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopLocked(syscall.SIGKILL)
}

// Restart stops the server if it runs (fast shutdown), starts it again on the same
// port and data directory, and waits until it accepts connections.
func (c *Cluster) Restart(ctx context.Context) error {
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		return errors.New("pgtest: Restart after Stop")
	}
	err := c.stopLocked(syscall.SIGINT)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := c.start(ctx); err != nil {
		return fmt.Errorf("pgtest: restarting %q: %w\n--- server log ---\n%s", c.Name, err, c.LogTail(30))
	}
	return nil
}

// LogTail returns the last n lines of the server log, or "" if there is none.
func (c *Cluster) LogTail(n int) string {
	b, err := os.ReadFile(c.logPath())
	if err != nil || n <= 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// DSN returns a connection string for database db as the superuser postgres,
// with its password when [Options.Password] set one.
func (c *Cluster) DSN(db string) string {
	user := "postgres"
	if c.password != "" {
		user = url.UserPassword("postgres", c.password).String()
	}
	return "postgres://" + user + "@127.0.0.1:" + strconv.Itoa(c.Port) + "/" + url.PathEscape(db) + "?sslmode=disable"
}

// ReplicationDSN returns a connection string for a logical replication connection
// (replication=database) to database db.
func (c *Cluster) ReplicationDSN(db string) string {
	return c.DSN(db) + "&replication=database"
}

// Exec runs each SQL string in database db on one connection, in order, with the
// simple query protocol, so a string may hold several statements.
func (c *Cluster) Exec(ctx context.Context, db string, sql ...string) error {
	conn, err := c.connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, s := range sql {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("pgtest: %q on %s: %w", abbrev(s), c.Name, err)
		}
	}
	return nil
}

// StartPsqlT starts psql running sql in db in a session of its own, in the
// background (for a transaction that must stay open while the test acts);
// the caller Waits for it. A psql still running when the test ends is
// killed.
func (c *Cluster) StartPsqlT(t testing.TB, db, sql string) *exec.Cmd {
	t.Helper()
	psql := filepath.Join(c.binDir, "psql")
	if _, err := os.Stat(psql); err != nil {
		// Some server packages come without client programs: the
		// PostgreSQL 15 psql speaks to every version here.
		dir, err := BinDir(V15)
		if err != nil {
			t.Fatalf("psql: %v", err)
		}
		psql = filepath.Join(dir, "psql")
	}
	cmd := exec.Command(psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", c.DSN(db), "-c", sql)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start psql: %v", err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// ExecT is [Cluster.Exec] for tests: it fails t on error.
func (c *Cluster) ExecT(t testing.TB, db string, sql ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.Exec(ctx, db, sql...); err != nil {
		t.Fatal(err)
	}
}

// CreateDatabase creates database name.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	return c.Exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

func (c *Cluster) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(c.DSN(db))
	if err != nil {
		return nil, err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgtest: connecting to %s: %w", c.Name, err)
	}
	return conn, nil
}

func abbrev(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
