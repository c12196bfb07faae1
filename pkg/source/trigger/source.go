package trigger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/source"
)

// Kind is the source kind in source.Identity.
const Kind = "trigger"

// Config configures the trigger-table source. Zero values mean the defaults.
type Config struct {
	// DSN is the source database's connection string, password merged in.
	// Required.
	DSN string
	// Include selects the user tables that get triggers when the source
	// installs them (Create) and whose triggers it checks; nil: every user
	// table (not in schema cdcd, pg_catalog or information_schema).
	Include func(schema, table string) bool
	// Create installs the change log and the triggers when something is
	// missing (Install is idempotent). Default false: anything missing is
	// a terminal error naming it and `cdcd trigger install --config <file>`.
	Create bool
	// AllowKeyless is Options.AllowKeyless for Create. Default false.
	AllowKeyless bool
	// PollInterval is the time between two polls that found nothing.
	// Default 200ms. After a poll that found changes the next one follows
	// as soon as they are acknowledged.
	PollInterval time.Duration
	// StateDir is the directory of the position state file (StateFile,
	// mode 0600); capture passes the trail directory. Required.
	StateDir string
	// ReadRows is the most change-log rows the source holds in memory: it
	// reads a batch's changes in groups of whole transactions of at most
	// this many rows, and a larger transaction in pages of this size.
	// Default 10000.
	ReadRows int
	// Exports, when set, lets an initial copy place a batch boundary at a
	// snapshot it reads under (see Exports). Default nil: no copies.
	Exports *Exports
	// Logger receives the source's log. Default: discard.
	Logger *slog.Logger
}

// Config defaults.
const (
	defaultPollInterval = 200 * time.Millisecond
	defaultReadRows     = 10000
)

func (c Config) withDefaults() Config {
	if c.PollInterval <= 0 {
		c.PollInterval = defaultPollInterval
	}
	if c.ReadRows <= 0 {
		c.ReadRows = defaultReadRows
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// NewOpener returns the Opener of the trigger source: each call connects,
// checks (or with Config.Create installs) the change log and the triggers,
// and reads the change log's identity. Errors that reopening cannot cure
// are TerminalErrors.
func NewOpener(cfg Config) source.Opener {
	cfg = cfg.withDefaults()
	return func(ctx context.Context) (source.Source, source.Identity, error) {
		s, err := open(ctx, cfg)
		if err != nil {
			return nil, source.Identity{}, err
		}
		return s, source.Identity{Kind: Kind, SystemID: s.systemID}, nil
	}
}

// Source is one session of the trigger source; see the package
// documentation, "The trigger source", for its positions and crash safety.
// Like every source.Source it is used from one goroutine.
type Source struct {
	cfg       Config
	conn      *pgx.Conn
	reader    *Reader
	log       *slog.Logger
	now       func() time.Time
	statePath string
	systemID  uint64

	started bool
	// prev is where the next poll starts; base is the EndLSN of the last
	// transaction before the next batch.
	prev Snapshot
	base change.LSN
	// fl is the batch being written (nil: none); its state is stored.
	fl *flight
	// unacked is a position whose rows are still to be deleted after an
	// Ack failed to delete them (zero: none).
	unacked Snapshot
	// pollDue is when the next poll may run.
	pollDue time.Time
	// announced is the Relation last sent for each table in this session.
	announced map[uint32]*change.Relation
}

var _ source.Source = (*Source)(nil)

func open(ctx context.Context, cfg Config) (*Source, error) {
	if cfg.DSN == "" {
		return nil, Terminal(errors.New("open trigger source: no DSN"))
	}
	if cfg.StateDir == "" {
		return nil, Terminal(errors.New("open trigger source: no state directory"))
	}
	conn, err := pgx.Connect(ctx, cfg.DSN)
	if err != nil {
		return nil, classify(fmt.Errorf("open trigger source: connect: %w", err))
	}
	s := &Source{
		cfg: cfg, conn: conn, reader: NewReader(), log: cfg.Logger, now: time.Now,
		statePath: filepath.Join(cfg.StateDir, StateFile),
		announced: map[uint32]*change.Relation{},
	}
	if err := s.prepare(ctx); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, classify(fmt.Errorf("open trigger source: %w", err))
	}
	return s, nil
}

// prepare checks the installation (installing it with Config.Create) and
// reads the source id.
func (s *Source) prepare(ctx context.Context) error {
	tables, err := Tables(ctx, s.conn, s.cfg.Include)
	if err != nil {
		return err
	}
	if err := Verify(ctx, s.conn, tables); err != nil {
		if !s.cfg.Create || !errors.Is(err, ErrNotInstalled) {
			return err
		}
		s.log.Info("installing trigger capture", "tables", len(tables), "missing", err)
		if err := Install(ctx, s.conn, tables, Options{AllowKeyless: s.cfg.AllowKeyless}); err != nil {
			return err
		}
	}
	s.systemID, err = SystemID(ctx, s.conn)
	return err
}

// Start implements source.Source; see the package documentation, "The
// trigger source", step 5.
func (s *Source) Start(ctx context.Context, held change.LSN) (change.LSN, error) {
	if s.started {
		return 0, errors.New("trigger source: Start called twice")
	}
	st, ok, err := loadState(s.statePath)
	if err != nil {
		return 0, Terminal(err)
	}
	if !ok {
		if held != 0 {
			return 0, Terminal(fmt.Errorf("start trigger source: the trail holds up to %s but %s is missing: "+
				"the position on the source is lost; restore the file or start a new trail", held, s.statePath))
		}
		// Everything the log holds, not "now": changes captured between
		// install and this first start are delivered too.
		pos, err := Earliest(ctx, s.conn)
		if err != nil {
			return 0, classify(fmt.Errorf("start trigger source: %w", err))
		}
		// Stored before any poll: a restart must read from here, not from
		// a later "now" that would skip what committed in between.
		if err := storeState(s.statePath, state{SystemID: s.systemID, Prev: pos, Cur: pos}); err != nil {
			return 0, err
		}
		s.prev, s.base, s.started = pos, 0, true
		s.log.Info("trigger source starts", "position", pos.String())
		return held, nil
	}
	if st.SystemID != s.systemID {
		return 0, Terminal(fmt.Errorf("start trigger source: %s belongs to change log %d, the source's is %d "+
			"(reinstalled after an uninstall, or another database): start a new trail", s.statePath, st.SystemID, s.systemID))
	}
	if held < st.Base {
		return 0, Terminal(fmt.Errorf("start trigger source: the trail holds up to %s, but the source deleted the changes up to %s: %w",
			held, st.Base, source.ErrAhead))
	}
	s.prev, s.base = st.Prev, st.Base
	if st.complete() {
		if held > st.Base {
			return 0, Terminal(fmt.Errorf("start trigger source: the trail holds up to %s, past the source's last position %s "+
				"(%s is older than the trail)", held, st.Base, s.statePath))
		}
		// A crash between storing the state and deleting the rows leaves
		// them behind; they are never read again (they are visible in
		// Prev), delete them now.
		if _, err := Ack(ctx, s.conn, st.Cur); err != nil {
			return 0, classify(fmt.Errorf("start trigger source: %w", err))
		}
		s.started = true
		return held, nil
	}
	if (held-st.Base)%2 != 0 {
		return 0, Terminal(fmt.Errorf("start trigger source: the trail's position %s is not a transaction end after %s", held, st.Base))
	}
	b, err := s.reader.headsBetween(ctx, s.conn, st.Prev, st.Cur)
	if err != nil {
		return 0, classify(fmt.Errorf("start trigger source: read the batch in flight again: %w", err))
	}
	skip := int((held - st.Base) / 2)
	if skip > len(b.Txs) {
		return 0, Terminal(fmt.Errorf("start trigger source: the trail holds %d transactions of the batch after %s, the change log has %d",
			skip, st.Base, len(b.Txs)))
	}
	s.fl = newFlight(b, st.Base, s.now(), skip)
	s.started = true
	s.log.Info("trigger source resumes a batch", "transactions", len(b.Txs), "durable", skip, "base", st.Base)
	if skip == len(b.Txs) {
		if err := s.complete(ctx); err != nil {
			return 0, err
		}
	}
	return held, nil
}

// Ack implements source.Source: once pos covers the whole batch in flight,
// the state moves past it and its rows are deleted (steps 7 and 8). A
// trigger source never has a position of its own to adopt.
func (s *Source) Ack(ctx context.Context, pos change.LSN, idle bool) (change.LSN, error) {
	if !s.unacked.IsZero() {
		if _, err := Ack(ctx, s.conn, s.unacked); err != nil {
			return 0, classify(fmt.Errorf("trigger source: delete acknowledged changes: %w", err))
		}
		s.unacked = Snapshot{}
	}
	if s.fl == nil || pos < s.fl.end() {
		return 0, nil
	}
	if !s.fl.done() {
		return 0, Terminal(fmt.Errorf("trigger source: acknowledged %s before the batch ending there was delivered", pos))
	}
	return 0, s.complete(ctx)
}

// complete stores that the batch in flight is durable, then deletes its rows.
func (s *Source) complete(ctx context.Context) error {
	end := s.fl.end()
	cur := s.fl.batch.Cur
	if err := storeState(s.statePath, state{SystemID: s.systemID, Prev: cur, Cur: cur, Base: end}); err != nil {
		return err
	}
	s.prev, s.base, s.fl = cur, end, nil
	s.pollDue = time.Time{} // more may be waiting: poll again at once
	if _, err := Ack(ctx, s.conn, cur); err != nil {
		s.unacked = cur
		return classify(fmt.Errorf("trigger source: delete acknowledged changes: %w", err))
	}
	return nil
}

// Close implements source.Source.
func (s *Source) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.conn.Close(ctx)
}
