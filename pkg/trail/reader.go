package trail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// ReaderOptions configures a Reader. The zero value reads what is on disk and
// stops with io.EOF.
type ReaderOptions struct {
	// Follow makes Next wait at the end of the trail for more records, until
	// its context is done. Default false: Next returns io.EOF at the end.
	Follow bool
	// Limit, when set, bounds reading: Next never returns a record at or
	// beyond Limit().Seq and never reads bytes past it. Pass Writer.Durable
	// so an in-process reader sees only synced, committed data — never a
	// transaction the writer later rolls back. Default nil: read everything
	// complete on disk (for tools, and readers of a trail no one writes).
	Limit func() Position
	// Speculate, with Limit, lets the reader run ahead of Limit into the
	// transaction the writer is still appending (records flushed to the
	// file but not yet synced), so a consumer can start on a large
	// transaction while capture still receives it. A COMMIT is never
	// returned before Limit covers it, so nothing beyond Limit can be made
	// final; if the writer rolls back what the reader ran ahead into, Next
	// returns ErrRolledBack and the consumer must discard everything since
	// its last COMMIT and reopen at its position. Pass Writer.Generation.
	// Default nil: never read past Limit.
	Speculate func() uint64
	// PollInterval is how long a following reader sleeps before looking for
	// more data. Default 20ms: far below a typical group-commit interval's
	// effect on end-to-end latency, and cheap (one read system call).
	PollInterval time.Duration
	// Idle, when set, is called each time a following reader has returned
	// everything available and is about to wait: a batching consumer closes
	// its batch there instead of waiting for a timer. Default nil.
	Idle func()
	// Wake, when set, returns a channel that is closed when the trail has
	// grown (Writer.Changed): a following reader then wakes at once instead
	// of at the next poll. Default nil: poll only.
	Wake func() <-chan struct{}
}

// Reader reads a trail's records in sequence order, across segments. It is
// not safe for concurrent use; run one Reader per consumer.
type Reader struct {
	dir     string
	from    uint64
	opts    ReaderOptions
	f       *os.File
	fr      *frameReader
	path    string
	first   uint64 // first seq of the current segment
	off     int64  // offset of the next frame
	nextSeq uint64
	sysID   uint64
	haveSys bool
	schemas map[uint32]*change.Relation
	blocks  blocks // memory of the records returned
	closed  bool
	// spec is set while records past Limit have been returned that Limit
	// does not cover yet; specGen is the writer's generation then.
	spec    bool
	specGen uint64
	// sealedAt is when a following reader last looked for the next
	// segment (nextExists).
	sealedAt time.Time
}

// ErrRolledBack is returned by a speculative reader (ReaderOptions.Speculate)
// when the writer rolled back records it had already returned.
var ErrRolledBack = errors.New("trail: records read ahead of the durable position were rolled back")

// NewReader returns a reader positioned at the first record with seq >= from;
// from 0 means the start of the oldest segment. Reading begins at the start
// of the segment holding from, so the relations of later changes resolve.
// NewReader fails with ErrPurged when from lies below the oldest segment.
// An empty directory is fine for a following reader: it waits for the first
// segment.
func NewReader(dir string, from uint64, opts ReaderOptions) (*Reader, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 20 * time.Millisecond
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("open trail reader: %w", err)
	}
	r := &Reader{dir: dir, from: from, opts: opts, schemas: make(map[uint32]*change.Relation)}
	if _, err := r.openStart(); err != nil {
		return nil, err
	}
	return r, nil
}

// openStart opens the segment holding r.from; false when there is none yet.
func (r *Reader) openStart() (bool, error) {
	seqs, err := listSegments(r.dir)
	if err != nil || len(seqs) == 0 {
		return false, err
	}
	if r.from > 0 && r.from < seqs[0] {
		return false, fmt.Errorf("open trail reader at seq %d: oldest segment starts at %d: %w", r.from, seqs[0], ErrPurged)
	}
	i, found := slices.BinarySearch(seqs, r.from)
	if !found && i > 0 {
		i--
	}
	return true, r.openSegment(seqs[i])
}

func (r *Reader) openSegment(first uint64) error {
	path := filepath.Join(r.dir, segmentName(first))
	f, h, err := openSegment(path, first)
	if err != nil {
		return fmt.Errorf("trail reader: %w", err)
	}
	if r.haveSys && h.systemID != r.sysID {
		f.Close()
		return &CorruptError{File: path, Offset: 16, Reason: fmt.Sprintf("system identifier %d differs from the previous segment's %d", h.systemID, r.sysID)}
	}
	r.sysID, r.haveSys = h.systemID, true
	if r.f != nil {
		r.f.Close()
	}
	if r.fr == nil {
		r.fr = newFrameReader(f, first)
	} else { // keep the buffer
		r.fr.f, r.fr.seed = f, crcSeed(first)
		r.fr.reset()
	}
	r.f, r.path, r.first, r.off, r.nextSeq = f, path, first, headerSize, first
	return nil
}

// Next returns the next record. At the end of the trail it returns io.EOF,
// or with Follow waits until there is more or ctx is done (returning
// ctx.Err()). Damage in a sealed segment or below Limit is a *CorruptError;
// a half-written record at the end of the active segment is not — it is
// waited for (Follow) or treated as the end.
func (r *Reader) Next(ctx context.Context) (Record, error) {
	for {
		if r.closed {
			return Record{}, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return Record{}, err
		}
		if r.f == nil {
			ok, err := r.openStart()
			if err != nil {
				return Record{}, err
			}
			if !ok {
				if err := r.wait(ctx); err != nil {
					return Record{}, err
				}
			}
			continue
		}

		// below: the record at nextSeq is known durable and complete.
		limitOff, below := int64(-1), false
		var lim Position
		if r.opts.Limit != nil {
			lim = r.opts.Limit()
			if r.nextSeq >= lim.Seq && r.opts.Speculate == nil {
				if err := r.wait(ctx); err != nil {
					return Record{}, err
				}
				continue
			}
			if r.nextSeq < lim.Seq {
				if r.spec { // what was read ahead is durable now: was it kept?
					if r.opts.Speculate() != r.specGen {
						return Record{}, ErrRolledBack
					}
					r.spec = false
				}
				below = true
				if lim.Segment == r.first {
					limitOff = lim.Offset
				}
			} else if r.spec {
				if r.opts.Speculate() != r.specGen {
					return Record{}, ErrRolledBack
				}
			} else {
				g := r.opts.Speculate()
				if g%2 == 1 { // a rollback is cutting the tail right now
					if err := r.wait(ctx); err != nil {
						return Record{}, err
					}
					continue
				}
				r.spec, r.specGen = true, g
			}
		}
		p, next, err := r.fr.next(r.off, limitOff)
		if (errors.Is(err, errEnd) || errors.Is(err, errTorn)) && !below {
			// The writer may have finished this segment and moved on
			// between our read and now: look again once the next
			// segment is known to exist, with fresh bytes.
			if !r.nextExists() {
				torn, reason := errors.Is(err, errTorn), r.fr.reason
				if err := r.wait(ctx); err != nil {
					return Record{}, r.atEnd(err, torn, reason)
				}
				continue
			}
			r.fr.reset()
			p, next, err = r.fr.next(r.off, -1)
		}
		switch {
		case errors.Is(err, errEnd):
			if limitOff >= 0 {
				return Record{}, r.corrupt(r.off, fmt.Sprintf("end of data before the durable position (seq %d)", r.nextSeq))
			}
			if err := r.openSegment(r.nextSeq); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return Record{}, r.corrupt(r.off, fmt.Sprintf("sealed segment ends at seq %d, but no segment starts there", r.nextSeq))
				}
				return Record{}, err
			}
			continue
		case errors.Is(err, errTorn):
			if r.spec && r.opts.Speculate() != r.specGen {
				return Record{}, ErrRolledBack
			}
			return Record{}, r.corrupt(r.off, r.fr.reason)
		case err != nil:
			return Record{}, err
		}

		if r.spec {
			if r.opts.Speculate() != r.specGen {
				return Record{}, ErrRolledBack
			}
			// A COMMIT past Limit waits until Limit covers it.
			if t, _, perr := peekRecord(p); perr == nil && t == RecordCommit && r.nextSeq >= r.opts.Limit().Seq {
				if err := r.wait(ctx); err != nil {
					return Record{}, err
				}
				continue
			}
		}
		rec, ok, err := r.record(p)
		if err != nil {
			if r.spec && r.opts.Speculate() != r.specGen {
				return Record{}, ErrRolledBack
			}
			return Record{}, err
		}
		r.off, r.nextSeq = next, r.nextSeq+1
		if ok {
			return rec, nil
		}
	}
}

// record decodes a checked payload; ok is false for records before r.from,
// which are skipped (only their SCHEMA records are applied).
func (r *Reader) record(p []byte) (rec Record, ok bool, err error) {
	t, seq, err := peekRecord(p)
	if err != nil {
		return Record{}, false, r.corrupt(r.off, err.Error())
	}
	if seq != r.nextSeq {
		return Record{}, false, r.corrupt(r.off, fmt.Sprintf("record seq %d, want %d", seq, r.nextSeq))
	}
	ok = seq >= r.from
	if !ok && t != RecordSchema {
		return Record{}, false, nil
	}
	if t == RecordChange || t == RecordMessage {
		// Values alias the payload: give the record its own copy of the
		// reader's buffer.
		p = r.blocks.copyBytes(p)
	}
	rec, err = decodeRecord(p, r.schemas, &r.blocks)
	if err != nil {
		return Record{}, false, r.corrupt(r.off, err.Error())
	}
	if rec.Type == RecordSchema {
		r.schemas[rec.Relation.OID] = rec.Relation
	}
	return rec, ok, nil
}

// nextExists reports whether the segment following the current one exists,
// which means the writer has sealed the current one. A following reader
// looks at most once per PollInterval: it comes here each time it has
// caught up with a live writer — several times per transaction when it
// reads ahead of Limit — and the look (a stat) was half of its CPU time;
// a segment sealed meanwhile is found at most PollInterval later, or as
// soon as Limit passes its end.
func (r *Reader) nextExists() bool {
	if r.nextSeq == r.first { // nothing read here yet: never sealed empty
		return false
	}
	if r.opts.Follow {
		now := time.Now()
		if now.Sub(r.sealedAt) < r.opts.PollInterval {
			return false
		}
		r.sealedAt = now
	}
	_, err := os.Stat(filepath.Join(r.dir, segmentName(r.nextSeq)))
	return err == nil
}

// atEnd turns the end of a non-following read into io.EOF, after checking
// that no later segment exists that this one fails to lead to, and — when
// the data ends in a bad frame (torn, with reason) — that it is not damage
// with intact records after it, which recovery would refuse too.
func (r *Reader) atEnd(err error, torn bool, reason string) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	if torn {
		st, serr := r.f.Stat()
		if serr != nil {
			return fmt.Errorf("stat trail segment: %w", serr)
		}
		if cerr := notTorn(r.f, r.path, st.Size(), r.first, r.off, r.nextSeq, reason); cerr != nil {
			// A live writer may have completed the frame since we read it
			// (our reads are not atomic with its writes): only a frame
			// still bad now, with the COMMIT after it, is damage.
			r.fr.reset()
			if _, _, err := r.fr.next(r.off, -1); err == nil {
				return io.EOF
			}
			return cerr
		}
	}
	seqs, lerr := listSegments(r.dir)
	if lerr != nil {
		return lerr
	}
	if len(seqs) > 0 && seqs[len(seqs)-1] > r.first {
		return r.corrupt(r.off, fmt.Sprintf("data ends at seq %d, but a later segment starts at %d", r.nextSeq, seqs[len(seqs)-1]))
	}
	return io.EOF
}

// wait sleeps for PollInterval, or returns io.EOF when not following.
func (r *Reader) wait(ctx context.Context) error {
	if !r.opts.Follow {
		return io.EOF
	}
	if r.fr != nil {
		r.fr.reset() // the bytes after a wait may differ (rollback)
	}
	var wake <-chan struct{}
	if r.opts.Wake != nil {
		wake = r.opts.Wake()
	}
	if r.opts.Idle != nil {
		r.opts.Idle()
	}
	t := time.NewTimer(r.opts.PollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	case <-wake:
		return nil
	}
}

func (r *Reader) corrupt(off int64, reason string) error {
	return &CorruptError{File: r.path, Offset: off, Reason: reason}
}

// Close releases the reader's file.
func (r *Reader) Close() error {
	if r.closed {
		return ErrClosed
	}
	r.closed = true
	if r.f != nil {
		return r.f.Close()
	}
	return nil
}
