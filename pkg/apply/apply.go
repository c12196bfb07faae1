// Package apply is cdcd's "replicat": one Worker per sink reads the trail
// from that sink's own position, groups whole source transactions into
// batches (closed by rows, bytes or delay, or as soon as the reader has
// caught up — for a sink.BatchPacer, once the batch is old enough), and
// hands them to the sink.
//
// Position handling, in order of preference:
//   - a sink.PositionStore writes the batch position in the same target
//     transaction as the data: exactly-once;
//   - a sink.AsyncCommitter also does, but its commits become durable only
//     later: the worker reports (Applied, Stats.Position) only what the sink
//     calls durable, asking it again on a timer while a commit is pending,
//     so the trail purge and `capture.ack: applied` never pass a commit a
//     target crash could take back;
//   - otherwise the worker stores the position in a checkpoint file after the
//     sink accepted the batch: at-least-once (a crash between the two
//     re-delivers the batch).
//
// A source transaction larger than one batch is sent in Partial chunks that
// a transactional sink applies in one target transaction, so memory stays
// bounded and atomicity holds.
package apply

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/checkpoint"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// Config configures a Worker. The zero value of every field means its default.
type Config struct {
	// Name is the sink's name (logs, checkpoint file). Required.
	Name string
	// TrailDir is the trail directory. Required.
	TrailDir string
	// MaxRows closes a batch at this many row changes. Default 10000.
	MaxRows int
	// MaxBytes closes a batch at about this many bytes of values. Default 16 MiB.
	MaxBytes int
	// MaxDelay closes a batch this long after its first transaction even
	// while more keeps arriving. Default 100ms. A batch is also closed as
	// soon as the reader has caught up with the trail.
	MaxDelay time.Duration
	// QueueBatches is how many batches may wait between reading and
	// applying (backpressure). Default 2.
	QueueBatches int
	// Durable bounds reading to what capture has made durable (pass the
	// trail writer's Durable in-process). Default nil: everything complete
	// on disk.
	Durable func() trail.Position
	// Speculate, with Durable, lets the reader run ahead of the durable
	// position into the transaction capture is still writing (pass the
	// trail writer's Generation in-process): a large transaction's Partial
	// chunks are applied while it is still being received, and only its
	// final chunk — holding the COMMIT, which is never read before it is
	// durable — lets the sink commit. A capture rollback under it restarts
	// the session from the sink's position. Default nil: read durable
	// data only.
	Speculate func() uint64
	// Wake wakes the reader when the trail grows (the writer's Changed).
	// Default nil: poll every 20ms.
	Wake func() <-chan struct{}
	// MinBackoff and MaxBackoff bound the retry backoff. Defaults 200ms, 30s.
	MinBackoff, MaxBackoff time.Duration
	// DrainTimeout bounds how long shutdown waits for the in-flight batch.
	// Default 60s.
	DrainTimeout time.Duration
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
}

func (c Config) defaults() Config {
	if c.MaxRows <= 0 {
		c.MaxRows = 10000
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 16 << 20
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = 100 * time.Millisecond
	}
	if c.QueueBatches <= 0 {
		c.QueueBatches = 2
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 200 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// OpenFunc connects a sink. The worker calls it at start and again after
// every retriable error.
type OpenFunc func(ctx context.Context) (sink.Sink, error)

// durablePoll is how often the worker asks an AsyncCommitter sink how far it
// is durable while a committed position is not yet known durable and no
// batch comes to tell.
const durablePoll = 20 * time.Millisecond

// Stats is a snapshot of a worker's progress.
type Stats struct {
	// Position is the last position applied durably: committed on the sink
	// and, for an AsyncCommitter, known durable there.
	Position sink.Position
	// Committed is the last position committed on the sink (visible there);
	// ahead of Position while an asynchronous commit is not yet durable.
	Committed    sink.Position
	Transactions uint64
	Rows         uint64
	Batches      uint64
	Retries      uint64
	// LastCommitTime is the source commit time of the last applied
	// transaction (lag in seconds = now - LastCommitTime while behind).
	LastCommitTime time.Time
	// LastError is the last error met, retried or not; empty when none.
	LastError string
	// Stopped reports that the worker ended with a terminal error.
	Stopped bool
}

// Worker applies the trail to one sink.
type Worker struct {
	cfg  Config
	open OpenFunc
	log  *slog.Logger
	ckpt *checkpoint.File

	mu     sync.Mutex
	stats  Stats
	opened bool          // the sink was opened once in this process
	pos    atomic.Uint64 // Position.Seq (durable), lock-free for purge

	holdMu sync.Mutex
	hold   *Hold // see Hold; nil when none
}

// New returns a worker for the sink opened by open.
func New(cfg Config, open OpenFunc) (*Worker, error) {
	cfg = cfg.defaults()
	if cfg.Name == "" {
		return nil, errors.New("apply: sink name is empty")
	}
	if cfg.TrailDir == "" {
		return nil, errors.New("apply: trail directory is empty")
	}
	return &Worker{
		cfg:  cfg,
		open: open,
		log:  cfg.Logger.With("sink", cfg.Name),
		ckpt: checkpoint.New(filepath.Join(cfg.TrailDir, "sink-"+cfg.Name+".pos")),
	}, nil
}

// Name is the sink's name.
func (w *Worker) Name() string { return w.cfg.Name }

// Applied is the trail sequence number of the last record applied durably (0
// before the first); records up to it may be purged as far as this sink goes.
func (w *Worker) Applied() uint64 { return w.pos.Load() }

// Stats returns a snapshot of the worker's progress. Safe for concurrent use.
func (w *Worker) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// Run applies until ctx is cancelled (then it finishes the in-flight batch,
// records the position and returns nil) or a terminal error occurs.
func (w *Worker) Run(ctx context.Context) error {
	backoff := w.cfg.MinBackoff
	for {
		progressed, err := w.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			return nil
		}
		if errors.Is(err, trail.ErrRolledBack) && w.opened {
			// Capture took back a transaction this session had started on
			// (a streamed one forwarded before its commit, then withdrawn):
			// the sink rolled back with its session; start over at once.
			w.log.Debug("capture withdrew the transaction being applied; starting over from the sink's position")
			continue
		}
		w.setError(err)
		// A sink that cannot be opened at start is a misconfiguration far
		// more often than an outage: fail fast with its message. Later
		// failures are retried.
		if !sink.IsRetriable(err) || !w.opened {
			w.mu.Lock()
			w.stats.Stopped = true
			w.mu.Unlock()
			return fmt.Errorf("sink %s: %w", w.cfg.Name, err)
		}
		if progressed {
			backoff = w.cfg.MinBackoff
		}
		w.mu.Lock()
		w.stats.Retries++
		w.mu.Unlock()
		w.log.Warn("sink failed; retrying from its position", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, w.cfg.MaxBackoff)
	}
}

func (w *Worker) setError(err error) {
	w.mu.Lock()
	w.stats.LastError = err.Error()
	w.mu.Unlock()
}

// session runs one connection to the sink: read → batch → apply.
// progressed reports whether any batch was applied.
func (w *Worker) session(ctx context.Context) (progressed bool, err error) {
	s, err := w.open(ctx)
	if err != nil {
		return false, err
	}
	w.opened = true
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if cerr := s.Close(cctx); cerr != nil && err == nil && ctx.Err() == nil {
			err = cerr
		}
	}()
	pos, err := w.loadPosition(ctx, s)
	if err != nil {
		return false, err
	}
	async, _ := s.(sink.AsyncCommitter)
	if async != nil {
		w.setCommitted(pos, async.Durable())
	} else {
		w.setCommitted(pos, pos)
	}
	w.log.Info("apply starting", "seq", pos.Seq, "end_lsn", pos.EndLSN.String())

	from, skipBelow, err := w.resume(ctx, pos)
	if err != nil {
		return false, err
	}

	queue := make(chan *sink.Batch, w.cfg.QueueBatches)
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	b := &batcher{cfg: w.cfg, out: queue, ctx: readCtx, w: w, last: pos, skipBelow: skipBelow}
	if p, ok := s.(sink.BatchPacer); ok {
		b.minDelay = min(p.MinBatchDelay(), w.cfg.MaxDelay)
	}
	r, err := trail.NewReader(w.cfg.TrailDir, from, trail.ReaderOptions{
		Follow: true, Limit: w.cfg.Durable, Speculate: w.cfg.Speculate, Wake: w.cfg.Wake, Idle: b.idle,
	})
	if err != nil {
		return false, fmt.Errorf("open trail for sink %s: %w", w.cfg.Name, err)
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(queue)
		defer r.Close()
		readErr <- b.run(r)
	}()
	defer func() {
		stopReading()
		for range queue { // let the reader goroutine finish
		}
		if rerr := <-readErr; rerr != nil && err == nil && ctx.Err() == nil {
			err = rerr
		}
	}()

	_, stores := s.(sink.PositionStore)
	// poll fires while a committed position is not yet known durable.
	poll := time.NewTimer(durablePoll)
	defer poll.Stop()
	for {
		var batch *sink.Batch
		select {
		case batch = <-queue:
		case <-poll.C:
			if async == nil || !w.pending() {
				continue
			}
			d, err := async.RefreshDurable(ctx)
			if err != nil {
				return progressed, err
			}
			w.setDurable(d)
			if w.pending() {
				poll.Reset(durablePoll)
			}
			continue
		}
		if batch == nil {
			return progressed, nil // the reader ended
		}
		// Shutdown: finish the batch being applied, never start another,
		// except to complete a large transaction already begun.
		if ctx.Err() != nil {
			return progressed, nil
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.DrainTimeout)
		err := s.Apply(actx, batch)
		cancel()
		if err != nil {
			return progressed, err
		}
		progressed = true
		if !batch.Partial {
			if !stores {
				if err := w.ckpt.Store(batch.Position.Seq); err != nil {
					return progressed, fmt.Errorf("store checkpoint of sink %s: %w", w.cfg.Name, err)
				}
			}
			durable := batch.Position
			if async != nil {
				durable = async.Durable()
			}
			w.applied(batch, durable)
			if w.pending() {
				poll.Reset(durablePoll)
			}
		} else {
			w.mu.Lock()
			w.stats.Rows += uint64(batch.Rows)
			w.mu.Unlock()
		}
	}
}

// resume finds where to read the trail for a sink at pos: after pos.Seq in
// the trail pos came from. A position below the oldest segment comes from
// another trail when that segment starts at or below pos.EndLSN — a new
// trail, after the old one was lost under `capture.ack: applied`, which
// numbers its records above any earlier trail's and holds every
// transaction after the slot's position, itself at or below what each sink
// applied. The worker then reads it from its start and drops the
// transactions that end at or below pos.EndLSN (skipBelow). Otherwise
// records the sink needs were purged: NewReader reports it.
func (w *Worker) resume(ctx context.Context, pos sink.Position) (from uint64, skipBelow change.LSN, err error) {
	for {
		segs, err := trail.Segments(w.cfg.TrailDir)
		if err != nil {
			return 0, 0, fmt.Errorf("list trail of sink %s: %w", w.cfg.Name, err)
		}
		if len(segs) > 0 {
			oldest := segs[0]
			if pos.Seq+1 >= oldest.FirstSeq || oldest.PrevEndLSN > pos.EndLSN {
				return pos.Seq + 1, 0, nil
			}
			if pos.Seq != 0 {
				w.log.Info("sink position is from an earlier trail: resuming this one by end LSN",
					"seq", pos.Seq, "end_lsn", pos.EndLSN.String(), "trail_first_seq", oldest.FirstSeq)
			}
			return oldest.FirstSeq, pos.EndLSN, nil
		}
		// Capture creates the trail once it reaches the source.
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (w *Worker) loadPosition(ctx context.Context, s sink.Sink) (sink.Position, error) {
	if ps, ok := s.(sink.PositionStore); ok {
		pos, err := ps.Position(ctx)
		if err != nil {
			return pos, fmt.Errorf("read position of sink %s: %w", w.cfg.Name, err)
		}
		return pos, nil
	}
	seq, _, err := w.ckpt.Load()
	return sink.Position{Seq: seq}, err
}

// setCommitted records the position a session starts from, committed on the
// sink, and how far the sink knows it durable. A position that an earlier
// session knew durable stays so (the sink re-learns it only once its WAL
// flush passes a newer commit) unless the sink is now behind it.
func (w *Worker) setCommitted(committed, durable sink.Position) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if durable.Seq < w.stats.Position.Seq && w.stats.Position.Seq <= committed.Seq {
		durable = w.stats.Position
	}
	w.stats.Committed, w.stats.Position = committed, durable
	w.pos.Store(durable.Seq)
}

// setDurable records that the sink's commits are durable up to d.
func (w *Worker) setDurable(d sink.Position) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d.Seq > w.stats.Position.Seq {
		w.stats.Position = d
		w.pos.Store(d.Seq)
	}
}

// pending reports a committed position not yet known durable.
func (w *Worker) pending() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats.Committed.Seq > w.stats.Position.Seq
}

// applied records a committed batch and how far the sink is durable.
func (w *Worker) applied(b *sink.Batch, durable sink.Position) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.Committed = b.Position
	if durable.Seq > w.stats.Position.Seq {
		w.stats.Position = durable
		w.pos.Store(durable.Seq)
	}
	w.stats.Batches++
	w.stats.Rows += uint64(b.Rows)
	for _, tx := range b.Txs {
		if tx.Tx != nil && tx.Tx.EndLSN != 0 {
			w.stats.Transactions++
			w.stats.LastCommitTime = tx.Tx.CommitTime
		}
	}
}

// ValueBytes is the size apply accounts for a row image.
func ValueBytes(r change.Row) int {
	n := 0
	for _, v := range r {
		n += len(v.Data) + 1
	}
	return n
}
