package snapshot

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// job is one chunk to copy.
type job struct {
	t *TableState
	i int
}

// copy copies every chunk not finished yet with one worker per connection,
// then finishes the tables.
// With a bulk loader, sinks holds one sink per worker; otherwise sinks[0]
// takes every row.
func (r *Runner) copy(ctx context.Context, st *State, conns []*pgx.Conn, sinks []sink.Sink, pos sink.Position, lsn change.LSN) error {
	first := sinks[0]
	loader, bulk := first.(sink.BulkLoader)
	var loaded map[string]bool
	if bulk {
		var err error
		if loaded, err = loader.Loaded(ctx, st.ID); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
	}
	isDone := func(t *TableState, i int) bool {
		if bulk {
			return loaded[chunkID(t, i)]
		}
		return t.done(i)
	}
	if r.restartTables(st, isDone, lsn) {
		if err := r.store(); err != nil {
			return err
		}
	}
	var jobs []job
	pending := map[*TableState]int{}
	for _, t := range st.Tables {
		done := 0
		for i := range t.Chunks {
			if isDone(t, i) {
				done++
				continue
			}
			jobs = append(jobs, job{t, i})
			pending[t]++
		}
		if done > 0 {
			r.log.Info("snapshot: chunks copied before are not copied again", "table", t.Table.Target.String(), "chunks_done", done, "chunks", len(t.Chunks))
		}
		r.progress.add(t, done)
	}
	// Truncations run before any chunk of their table.
	if bulk {
		for _, t := range st.Tables {
			if !t.Truncate || t.Finished || loaded[truncateID(t)] {
				continue
			}
			c := &sink.BulkChunk{SnapshotID: st.ID, ID: truncateID(t), Schema: t.Table.Target.Schema, Table: t.Table.Target.Name, Truncate: true, Def: t.Table}
			if _, err := loader.Load(ctx, c, nil); err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
		}
	}
	// Tables whose chunks all finished before (a crash before the key was
	// added) are finished now.
	for _, t := range st.Tables {
		if pending[t] == 0 && !t.Finished {
			if err := r.finishTable(ctx, first, t); err != nil {
				return err
			}
		}
	}

	logDone := make(chan struct{})
	defer close(logDone)
	if r.cfg.Bar == nil {
		go r.progress.logLoop(r.log, 10*time.Second, logDone)
	}

	queue := make(chan job)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(queue)
		for _, j := range jobs {
			select {
			case queue <- j:
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	var mu sync.Mutex // pending
	chunkDone := func(s sink.Sink, j job) error {
		mu.Lock()
		pending[j.t]--
		last := pending[j.t] == 0
		mu.Unlock()
		if last {
			return r.finishTable(gctx, s, j.t)
		}
		return nil
	}
	if bulk {
		for w, conn := range conns {
			g.Go(func() error {
				s := sinks[w]
				l := s.(sink.BulkLoader) // checked by openSinks
				for j := range queue {
					if err := r.bulkChunk(gctx, conn, l, st.ID, j); err != nil {
						return err
					}
					if err := chunkDone(s, j); err != nil {
						return err
					}
				}
				return nil
			})
		}
	} else {
		out := make(chan rowItem, 2*len(conns))
		var readers sync.WaitGroup
		for _, conn := range conns {
			readers.Add(1)
			g.Go(func() error {
				defer readers.Done()
				for j := range queue {
					if err := r.readChunk(gctx, conn, j, out); err != nil {
						return err
					}
				}
				return nil
			})
		}
		go func() { readers.Wait(); close(out) }()
		g.Go(func() error {
			return r.writeRows(gctx, first, pos, out, chunkDone)
		})
	}
	return g.Wait()
}

// restartTables makes every keyless table not wholly loaded copy again
// under the current snapshot (consistent point lsn), which it then takes as
// its own: the rows of such a table cannot be matched with the stream's
// changes by key, so they must all come from one snapshot. A table with
// chunks loaded under an earlier one is emptied first, in a new round of
// chunk IDs. It reports whether any table changed; the state must then be
// stored before the first chunk is loaded.
func (r *Runner) restartTables(st *State, isDone func(*TableState, int) bool, lsn change.LSN) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	for _, t := range st.Tables {
		if len(t.Table.PrimaryKey) > 0 || t.Finished {
			continue
		}
		done := 0
		for i := range t.Chunks {
			if isDone(t, i) {
				done++
			}
		}
		if done == len(t.Chunks) {
			continue // loaded under the snapshot its Skip names
		}
		if done > 0 {
			t.Round++
			t.Truncate = true
			t.Done = nil
			r.log.Info("snapshot: keyless table partly loaded under an earlier snapshot; emptied and copied again",
				"table", t.Table.Target.String(), "chunks_done", done, "chunks", len(t.Chunks))
		}
		if t.Skip != lsn.String() || done > 0 {
			t.Skip = lsn.String()
			changed = true
		}
	}
	return changed
}

// bulkChunk copies one chunk from the source straight into the sink's bulk
// path: COPY TO STDOUT on the source piped into the loader's COPY FROM.
func (r *Runner) bulkChunk(ctx context.Context, conn *pgx.Conn, l sink.BulkLoader, snapID string, j job) error {
	t := j.t
	r.progress.start(t.Table.Target.String(), r.cfg.Bar)
	cols := make([]string, len(t.Table.Columns))
	for i, c := range t.Table.Columns {
		cols[i] = c.Name
	}
	c := &sink.BulkChunk{SnapshotID: snapID, ID: chunkID(t, j.i), Schema: t.Table.Target.Schema, Table: t.Table.Target.Name,
		Columns: cols, Binary: t.Binary, Def: t.Table}
	pr, pw := io.Pipe()
	copyErr := make(chan error, 1)
	sql := copySQL(t, t.Chunks[j.i], r.cfg.Map.Where(t.Table.Source.Schema, t.Table.Source.Name))
	go func() {
		// The source sends one message per row: hand them on in large
		// blocks rather than one pipe write each.
		bw := bufio.NewWriterSize(pw, 256<<10)
		_, err := conn.PgConn().CopyTo(ctx, bw, sql)
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			err = fmt.Errorf("copy chunk %s from %s: %w", c.ID, t.Table.Source, err)
		}
		pw.CloseWithError(err)
		copyErr <- err
	}()
	n, err := l.Load(ctx, c, pr)
	pr.CloseWithError(fmt.Errorf("load ended"))
	cerr := <-copyErr
	if cerr != nil {
		return fmt.Errorf("snapshot: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	r.progress.chunk(t.Table.Target.String(), n, r.cfg.Bar)
	return nil
}

// finishTable adds a deferred key and records the table finished.
func (r *Runner) finishTable(ctx context.Context, s sink.Sink, t *TableState) error {
	if t.DeferredKey {
		sc, ok := s.(sink.SchemaCreator)
		if !ok {
			return fmt.Errorf("snapshot: sink %s cannot add the primary key of %s", r.cfg.Sink, t.Table.Target)
		}
		start := time.Now()
		if err := sc.FinishTable(ctx, t.Table); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		r.log.Info("snapshot: primary key added", "table", t.Table.Target.String(), "elapsed", time.Since(start).Round(time.Millisecond).String())
	}
	r.mu.Lock()
	t.Finished = true
	r.mu.Unlock()
	r.progress.finish(t.Table.Target.String(), r.cfg.Bar)
	r.log.Info("snapshot: table copied", "table", t.Table.Target.String())
	return r.store()
}

// rowItem is a batch of snapshot rows, or (done set) the end of a chunk.
type rowItem struct {
	j    job
	rel  *change.Relation
	rows []change.Row
	done bool
}

// readChunk reads one chunk as COPY text and sends its rows in batches.
func (r *Runner) readChunk(ctx context.Context, conn *pgx.Conn, j job, out chan<- rowItem) error {
	t := j.t
	r.progress.start(t.Table.Target.String(), r.cfg.Bar)
	rel := relation(t)
	// Not a copy of *t: writeRows appends to t.Done concurrently (under
	// r.mu). copySQL reads only the table and the format.
	tt := TableState{Table: t.Table}
	rw := &rowWriter{ncols: len(t.Table.Columns), flush: func(rows []change.Row) error {
		select {
		case out <- rowItem{j: j, rel: rel, rows: rows}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, batch: r.cfg.BatchRows}
	sql := copySQL(&tt, t.Chunks[j.i], r.cfg.Map.Where(t.Table.Source.Schema, t.Table.Source.Name))
	if _, err := conn.PgConn().CopyTo(ctx, rw, sql); err != nil {
		return fmt.Errorf("snapshot: copy chunk %s from %s: %w", chunkID(t, j.i), t.Table.Source, err)
	}
	if err := rw.Close(); err != nil {
		return fmt.Errorf("snapshot: copy chunk %s from %s: %w", chunkID(t, j.i), t.Table.Source, err)
	}
	select {
	case out <- rowItem{j: j, done: true}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeRows applies the row batches to a sink without bulk loading, one
// batch at a time, and records each chunk once all its rows are applied.
func (r *Runner) writeRows(ctx context.Context, s sink.Sink, pos sink.Position, in <-chan rowItem, chunkDone func(sink.Sink, job) error) error {
	rowsOf := map[job]int64{}
	for it := range in {
		if it.done {
			r.mu.Lock()
			it.j.t.Done = append(it.j.t.Done, it.j.i)
			r.mu.Unlock()
			if err := r.store(); err != nil {
				return err
			}
			r.progress.chunk(it.j.t.Table.Target.String(), rowsOf[it.j], r.cfg.Bar)
			delete(rowsOf, it.j)
			if err := chunkDone(s, it.j); err != nil {
				return err
			}
			continue
		}
		changes := make([]*change.Change, len(it.rows))
		for i, row := range it.rows {
			changes[i] = &change.Change{Op: change.OpInsert, Relation: it.rel, New: row}
		}
		b := &sink.Batch{Txs: []sink.Tx{{Changes: changes}}, Position: pos, Rows: len(changes), Snapshot: true}
		if err := s.Apply(ctx, b); err != nil {
			return fmt.Errorf("snapshot: sink %s: %w", r.cfg.Sink, err)
		}
		rowsOf[it.j] += int64(len(changes))
	}
	return ctx.Err()
}

// relation is the target relation of a table's snapshot rows.
func relation(t *TableState) *change.Relation {
	rel := &change.Relation{OID: t.Table.OID, Schema: t.Table.Target.Schema, Name: t.Table.Target.Name, ReplicaIdentity: 'd'}
	for _, c := range t.Table.Columns {
		rel.Columns = append(rel.Columns, change.Column{Name: c.Name, TypeOID: c.TypeOID, TypeName: c.Type, TypeMod: -1})
	}
	for _, k := range t.Table.PrimaryKey {
		rel.PrimaryKey = append(rel.PrimaryKey, t.Table.Column(k))
		rel.Columns[t.Table.Column(k)].Key = true
	}
	return rel
}
