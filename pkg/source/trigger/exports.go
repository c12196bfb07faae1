package trigger

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// Exports places initial copies at batch boundaries of a running trigger
// source: Export asks the source to end its next batch exactly at a
// snapshot it exports, so the copy (reading under that snapshot) holds
// exactly the transactions of the batches up to that boundary, and the
// stream after it exactly the others. The stream's position of the
// boundary (the end of that batch) is what the copy's tables skip up to.
//
// Why the boundary must be placed by the source: a transaction is in the
// copy when it is visible in the copy's snapshot, and a batch holds the
// transactions visible in its snapshot and not in the previous one, in an
// order unrelated to commits. Only a batch that ends at the copy's own
// snapshot splits the stream into "in the copy" and "not in the copy" at
// one position.
//
// Give the same Exports to the source (Config.Exports) and to whoever
// copies; one Exports serves one source.
type Exports struct {
	reqs chan *exportRequest
}

// NewExports returns an Exports for one source.
func NewExports() *Exports { return &Exports{reqs: make(chan *exportRequest)} }

// Exported is a snapshot exported at a batch boundary. It stays importable
// (SET TRANSACTION SNAPSHOT) until Close.
type Exported struct {
	// Name is the snapshot's identifier for SET TRANSACTION SNAPSHOT.
	Name string
	// LSN is the stream position of the boundary: transactions ending at
	// or before it are visible in the snapshot, those after it are not.
	LSN change.LSN

	exp  *Export
	conn *pgx.Conn
}

// Close ends the exporting transaction and its connection.
func (e *Exported) Close(ctx context.Context) error {
	if e == nil || e.conn == nil {
		return nil
	}
	err := e.exp.Close(ctx)
	if cerr := e.conn.Close(ctx); err == nil {
		err = cerr
	}
	e.conn = nil
	return err
}

type exportRequest struct {
	mu        sync.Mutex
	abandoned bool
	ready     chan struct{}
	exp       *Exported
	err       error
}

// Export waits until the source's next poll has placed a boundary and
// returns the snapshot exported there. It returns ctx's error if ctx ends
// first (the source is not running, or is still delivering a batch).
func (e *Exports) Export(ctx context.Context) (*Exported, error) {
	r := &exportRequest{ready: make(chan struct{})}
	select {
	case e.reqs <- r:
	case <-ctx.Done():
		return nil, fmt.Errorf("trigger source: export a snapshot: %w (is capture running?)", ctx.Err())
	}
	select {
	case <-r.ready:
		return r.exp, r.err
	case <-ctx.Done():
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.abandoned = true
	if r.exp != nil { // served while we gave up
		r.exp.Close(context.WithoutCancel(ctx))
	}
	return nil, ctx.Err()
}

// pending returns a waiting request, or nil.
func (e *Exports) pending() *exportRequest {
	if e == nil {
		return nil
	}
	select {
	case r := <-e.reqs:
		return r
	default:
		return nil
	}
}

// reply hands the result to the requester, or closes exp when the
// requester has gone.
func (r *exportRequest) reply(exp *Exported, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.abandoned {
		if exp != nil {
			exp.Close(context.Background())
		}
		return
	}
	r.exp, r.err = exp, err
	close(r.ready)
}

// export serves r at the start of a poll (no batch in flight): it exports a
// snapshot on a connection of its own and polls up to exactly that
// snapshot, so the batch it makes the flight ends at the boundary.
func (s *Source) export(ctx context.Context, r *exportRequest) error {
	conn, err := pgx.Connect(ctx, s.cfg.DSN)
	if err != nil {
		err = classify(fmt.Errorf("trigger source: export a snapshot: connect: %w", err))
		r.reply(nil, err)
		return err
	}
	exp, err := StartExport(ctx, conn)
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		err = classify(fmt.Errorf("trigger source: %w", err))
		r.reply(nil, err)
		return err
	}
	out := &Exported{Name: exp.Name, exp: exp, conn: conn}
	b, err := s.reader.headsBetween(ctx, s.conn, s.prev, exp.Position)
	if err == nil {
		err = s.take(b)
	}
	if err != nil {
		out.Close(context.WithoutCancel(ctx))
		err = classify(fmt.Errorf("trigger source: read up to the exported snapshot: %w", err))
		r.reply(nil, err)
		return err
	}
	out.LSN = s.base + change.LSN(2*len(b.Txs))
	s.log.Info("trigger source: snapshot exported at a batch boundary", "snapshot", exp.Position.String(),
		"position", out.LSN, "transactions_before", len(b.Txs))
	r.reply(out, nil)
	return nil
}
