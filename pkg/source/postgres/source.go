package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/dsn"
)

// Source is one session with a PostgreSQL source: a replication connection
// for the stream and a regular connection for catalog queries. It is not
// safe for concurrent use; the stream methods must be called from a single
// goroutine (receive and status updates share the connection).
type Source struct {
	cfg     Config
	log     *slog.Logger
	repl    *pgconn.PgConn
	catalog *pgx.Conn

	// SystemID is the source cluster's system identifier (the same on a
	// primary and its physical standbys).
	SystemID uint64
	// Timeline is the server's current timeline.
	Timeline int32
	// XLogPos is the server's flush position when the session started.
	XLogPos change.LSN
	// ServerVersion is server_version_num, e.g. 170002.
	ServerVersion int
	// Standby reports that the server is in recovery (a physical standby).
	Standby bool

	interrupted atomic.Bool
	// sock reads the replication socket under pgproto3's buffer: deadlines
	// and batching happen per read system call, not per message.
	sock *batchReader
}

// Connect opens the replication and catalog connections and identifies the
// system. Errors name the server without its password.
func Connect(ctx context.Context, cfg Config, log *slog.Logger) (*Source, error) {
	cfg = cfg.Defaults()
	if cfg.DSN == "" {
		return nil, Terminal(errors.New("source.dsn is empty: set it to the source's connection string"))
	}
	if err := validIdent("source.slot", cfg.Slot); err != nil {
		return nil, err
	}
	if err := validIdent("source.publication", cfg.Publication); err != nil {
		return nil, err
	}
	replCfg, err := pgconn.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, Terminal(fmt.Errorf("parse source.dsn %s: %w", dsn.Redact(cfg.DSN), dsn.RedactError(err, dsn.Password(cfg.DSN))))
	}
	replCfg.RuntimeParams["replication"] = "database"
	// pgproto3 reads the socket 8 KiB at a time; a bulk stream wants far
	// fewer, larger reads. pgconn builds a frontend per connection attempt;
	// the last one built is the connection's.
	var sock *batchReader
	replCfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		sock = &batchReader{r: r}
		return pgproto3.NewFrontend(bufio.NewReaderSize(sock, 256<<10), w)
	}
	replCfg.RuntimeParams["application_name"] = "cdcd"
	catCfg, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, Terminal(fmt.Errorf("parse source.dsn %s: %w", dsn.Redact(cfg.DSN), dsn.RedactError(err, dsn.Password(cfg.DSN))))
	}
	catCfg.RuntimeParams["application_name"] = "cdcd-catalog"
	// Catalog queries run once or rarely: one round trip each (no
	// prepare-then-execute), which matters at start-up.
	catCfg.DefaultQueryExecMode = pgx.QueryExecModeExec

	// Each connection costs the server a backend start and both a round
	// trip or two: open and query them side by side.
	s := &Source{cfg: cfg, log: log}
	catErr := make(chan error, 1)
	go func() { catErr <- s.connectCatalog(ctx, catCfg) }()
	err = s.connectRepl(ctx, replCfg)
	if cerr := <-catErr; err == nil {
		err = cerr
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	s.sock = sock
	switch cfg.Streaming {
	case "auto", "off":
	case "on":
		if s.ServerVersion < 140000 {
			s.Close()
			return nil, Terminal(fmt.Errorf("source.streaming is on but source %s is PostgreSQL %d: streaming of in-progress transactions needs PostgreSQL 14 or later; set source.streaming: auto or off",
				describe(replCfg), s.ServerVersion/10000))
		}
	default:
		s.Close()
		return nil, Terminal(fmt.Errorf("source.streaming %q is not one of on, off, auto", cfg.Streaming))
	}
	switch cfg.Failover {
	case "auto", "off":
	case "on":
		if s.ServerVersion < 170000 || s.Standby {
			role := "primary"
			if s.Standby {
				role = "standby"
			}
			s.Close()
			return nil, Terminal(fmt.Errorf("source.failover is on but source %s is a PostgreSQL %d %s: failover slots need a PostgreSQL 17 primary; set source.failover: auto or off",
				describe(replCfg), s.ServerVersion/10000, role))
		}
	default:
		s.Close()
		return nil, Terminal(fmt.Errorf("source.failover %q is not one of on, off, auto", cfg.Failover))
	}
	if s.Standby && s.ServerVersion < 160000 {
		s.Close()
		return nil, Terminal(fmt.Errorf("source %s is a PostgreSQL %d standby: logical decoding on a standby needs PostgreSQL 16 or later; point source.dsn at the primary or upgrade",
			describe(replCfg), s.ServerVersion/10000))
	}
	return s, nil
}

// connectRepl opens the replication connection and identifies the system.
func (s *Source) connectRepl(ctx context.Context, replCfg *pgconn.Config) error {
	repl, err := pgconn.ConnectConfig(ctx, replCfg)
	if err != nil {
		return classify(fmt.Errorf("connect to source %s: %w", describe(replCfg), dsn.RedactError(err, replCfg.Password)))
	}
	s.repl = repl
	id, err := pglogrepl.IdentifySystem(ctx, repl)
	if err != nil {
		return classify(fmt.Errorf("identify source system: %w", err))
	}
	sysID, err := strconv.ParseUint(id.SystemID, 10, 64)
	if err != nil {
		return Terminal(fmt.Errorf("identify source system: bad system id %q", id.SystemID))
	}
	s.SystemID, s.Timeline, s.XLogPos = sysID, id.Timeline, change.LSN(id.XLogPos)
	return nil
}

// connectCatalog opens the catalog connection and reads the server's
// version and role.
func (s *Source) connectCatalog(ctx context.Context, catCfg *pgx.ConnConfig) error {
	catalog, err := pgx.ConnectConfig(ctx, catCfg)
	if err != nil {
		return classify(fmt.Errorf("connect to source %s: %w", describe(&catCfg.Config), dsn.RedactError(err, catCfg.Password)))
	}
	s.catalog = catalog
	if err := catalog.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, pg_is_in_recovery()`).
		Scan(&s.ServerVersion, &s.Standby); err != nil {
		return classify(fmt.Errorf("read source version: %w", err))
	}
	return nil
}

// Close closes both connections.
func (s *Source) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if s.repl != nil {
		s.repl.Close(ctx)
	}
	if s.catalog != nil {
		s.catalog.Close(ctx)
	}
}

// SlotInfo is what pg_replication_slots says about the slot.
type SlotInfo struct {
	Exists            bool
	Plugin            string
	Database          string
	ConfirmedFlushLSN change.LSN
	Active            bool
	WALStatus         string
	// Conflicting is the PG16+ invalidation flag (always false on older).
	Conflicting bool
	// Failover is the PG17+ failover flag (always false on older).
	Failover bool
}

// Slot reads the slot's state.
func (s *Source) Slot(ctx context.Context) (SlotInfo, error) {
	var info SlotInfo
	var lsn *string
	var plugin, db, walStatus *string
	conflict, failover := "false", "false"
	if s.ServerVersion >= 160000 {
		conflict = "coalesce(conflicting, false)"
	}
	if s.ServerVersion >= 170000 {
		failover = "failover"
	}
	err := s.catalog.QueryRow(ctx, `SELECT plugin, database, confirmed_flush_lsn::text, active, wal_status, `+conflict+`, `+failover+`
		FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Slot).
		Scan(&plugin, &db, &lsn, &info.Active, &walStatus, &info.Conflicting, &info.Failover)
	if errors.Is(err, pgx.ErrNoRows) {
		return info, nil
	}
	if err != nil {
		return info, classify(fmt.Errorf("read slot %s: %w", s.cfg.Slot, err))
	}
	info.Exists = true
	info.Plugin, info.Database, info.WALStatus = deref(plugin), deref(db), deref(walStatus)
	if lsn != nil {
		if info.ConfirmedFlushLSN, err = change.ParseLSN(*lsn); err != nil {
			return info, err
		}
	}
	return info, nil
}

// Prepare makes sure the publication and the slot exist, creating them when
// Config.Create allows it. It returns the slot's state afterwards and whether
// the slot was created now.
func (s *Source) Prepare(ctx context.Context) (SlotInfo, bool, error) {
	if err := s.preparePublication(ctx); err != nil {
		return SlotInfo{}, false, err
	}
	info, err := s.Slot(ctx)
	if err != nil {
		return info, false, err
	}
	if info.Exists {
		if info.Plugin != "pgoutput" {
			return info, false, Terminal(fmt.Errorf("slot %s uses plugin %q: cdcd needs a pgoutput slot; drop it or set source.slot to another name", s.cfg.Slot, info.Plugin))
		}
		if info.Conflicting || info.WALStatus == "lost" {
			return info, false, Terminal(fmt.Errorf("slot %s is invalidated (wal_status=%s, conflicting=%v): changes were lost on the source; re-create the slot and re-synchronise the target (cdcd never re-creates it silently)",
				s.cfg.Slot, info.WALStatus, info.Conflicting))
		}
		if s.Failover() && !info.Failover {
			if err := s.enableFailover(ctx); err != nil {
				return info, false, err
			}
			info.Failover = true
		}
		return info, false, nil
	}
	if !s.cfg.Create {
		return info, false, Terminal(fmt.Errorf("replication slot %s does not exist on the source: create it (SELECT pg_create_logical_replication_slot('%s', 'pgoutput')) or set source.create: true", s.cfg.Slot, s.cfg.Slot))
	}
	if err := s.createSlot(ctx); err != nil {
		return info, false, err
	}
	info, err = s.Slot(ctx)
	return info, true, err
}

// preparePublication makes sure the publication exists, creating it FOR ALL
// TABLES when Config.Create allows. On a standby with a PrimaryDSN, the
// primary decides whether it exists (the standby may not have replayed it
// yet) and is where it is created; the standby must then replay it.
func (s *Source) preparePublication(ctx context.Context) error {
	pub := s.cfg.Publication
	exists, err := PublicationExists(ctx, s.catalog, pub)
	if err != nil {
		return classify(err)
	}
	if exists {
		return nil
	}
	missing := func() error {
		return Terminal(fmt.Errorf("publication %s does not exist on the source: create it (CREATE PUBLICATION %s FOR ALL TABLES) or set source.create: true", pub, pub))
	}
	stmt := "CREATE PUBLICATION " + pgx.Identifier{pub}.Sanitize() + " FOR ALL TABLES"
	if !s.Standby {
		if !s.cfg.Create {
			return missing()
		}
		if _, err := s.catalog.Exec(ctx, stmt); err != nil {
			return classify(fmt.Errorf("create publication %s: %w", pub, err))
		}
		s.log.Info("created publication", "publication", pub)
		return nil
	}
	if s.cfg.PrimaryDSN == "" {
		if !s.cfg.Create {
			return missing()
		}
		return Terminal(fmt.Errorf("publication %s does not exist and the source is a standby (read-only): create it on the primary or set source.primary_dsn", pub))
	}
	created, err := PublicationOnPrimary(ctx, s.catalog, s.cfg.PrimaryDSN, pub, func(ctx context.Context, primary *pgx.Conn) error {
		if !s.cfg.Create {
			return missing()
		}
		if _, err := primary.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("create publication %s on the primary: %w", pub, err)
		}
		return nil
	})
	if created {
		s.log.Info("created publication on the primary", "publication", pub)
	}
	return classify(err)
}

func (s *Source) createSlot(ctx context.Context) error {
	// On a standby, slot creation waits for a running-xacts record from the
	// primary; ask the primary for one while we wait.
	stop := func() {}
	if s.Standby && s.cfg.PrimaryDSN != "" {
		hctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			for {
				_ = onPrimary(hctx, s.cfg.PrimaryDSN, "SELECT pg_log_standby_snapshot()")
				select {
				case <-hctx.Done():
					return
				case <-t.C:
				}
			}
		}()
		stop = func() { cancel(); <-done }
	}
	_, err := s.repl.Exec(ctx, createSlotCommand(s.cfg.Slot, s.Failover())).ReadAll()
	stop()
	if err != nil {
		return classify(fmt.Errorf("create replication slot %s: %w", s.cfg.Slot, err))
	}
	s.log.Info("created replication slot", "slot", s.cfg.Slot, "standby", s.Standby, "failover", s.Failover())
	return nil
}

// Streaming reports whether the session asks the server to stream
// in-progress transactions (protocol 2): Config.Streaming is not "off" and
// the server is PostgreSQL 14 or later.
func (s *Source) Streaming() bool {
	return s.cfg.Streaming != "off" && s.ServerVersion >= 140000
}

// StartStream starts pgoutput streaming (messages on; protocol 2 with
// streaming on when Streaming says so, else protocol 1) from start. The
// server moves a start position below the slot's confirmed_flush_lsn up to
// it silently; callers check the slot first.
func (s *Source) StartStream(ctx context.Context, start change.LSN) error {
	args := []string{
		"proto_version '1'",
		"publication_names '" + s.cfg.Publication + "'",
		"messages 'true'",
	}
	if s.Streaming() {
		args[0] = "proto_version '2'"
		args = append(args, "streaming 'on'")
	}
	err := pglogrepl.StartReplication(ctx, s.repl, s.cfg.Slot, pglogrepl.LSN(start),
		pglogrepl.StartReplicationOptions{Mode: pglogrepl.LogicalReplication, PluginArgs: args})
	if err != nil {
		return classify(fmt.Errorf("start replication on slot %s at %s: %w", s.cfg.Slot, start, err))
	}
	s.sock.start(s.repl.Conn(), &s.interrupted)
	return nil
}

// Config returns the source's configuration with defaults applied.
func (s *Source) Config() Config { return s.cfg }

func onPrimary(ctx context.Context, primaryDSN, stmt string) error {
	conn, err := pgx.Connect(ctx, primaryDSN)
	if err != nil {
		return dsn.RedactError(err, dsn.Password(primaryDSN))
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, stmt)
	return err
}

func validIdent(key, v string) error {
	if v == "" || len(v) > 63 || strings.ToLower(v) != v || strings.ContainsFunc(v, func(r rune) bool {
		return !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	}) {
		return Terminal(fmt.Errorf("%s %q is not a valid slot/publication name: use lower-case letters, digits and underscores (at most 63)", key, v))
	}
	return nil
}

func describe(c *pgconn.Config) string {
	return fmt.Sprintf("%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
