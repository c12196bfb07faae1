package mapping

import (
	"context"
	"fmt"
	"sync"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// Sink is a decorator between the trail and a sink: it drops the changes of
// excluded tables, rewrites relations and rows to their target names and
// columns, and drops the changes a snapshot already holds (see Skip).
type Sink struct {
	inner sink.Sink
	rel   *Relations
	skip  map[string]change.LSN
}

// Wrap decorates inner. skip maps source tables ("schema.table") to the
// consistent point of the snapshot they were copied under: changes of
// transactions whose commit record starts before it (so ends at or before
// it) are in the copy already and are dropped. The result has inner's
// optional abilities (sink.Decorate).
func Wrap(inner sink.Sink, m *Map, skip map[string]change.LSN) sink.Sink {
	return sink.Decorate(&Sink{inner: inner, rel: NewRelations(m), skip: skip}, inner)
}

// Apply rewrites b and applies it to the inner sink.
func (s *Sink) Apply(ctx context.Context, b *sink.Batch) error {
	out := *b
	out.Txs = make([]sink.Tx, 0, len(b.Txs))
	for _, tx := range b.Txs {
		ntx := sink.Tx{Tx: tx.Tx, Changes: make([]*change.Change, 0, len(tx.Changes))}
		for _, c := range tx.Changes {
			if err := s.undecided(tx.Tx, c); err != nil {
				return err
			}
			if c = s.change(tx.Tx, c); c != nil {
				ntx.Changes = append(ntx.Changes, c)
			}
		}
		out.Txs = append(out.Txs, ntx)
	}
	return s.inner.Apply(ctx, &out)
}

// undecided refuses a change that a snapshot may hold already, of a
// transaction forwarded before its commit (FinalLSN 0: the chunk does not
// say where it commits). A change at or past the snapshot's consistent point
// belongs to a transaction committing after it, which the copy cannot hold;
// one before it cannot be told, and is not guessed.
func (s *Sink) undecided(tx *change.Tx, c *change.Change) error {
	if tx == nil || tx.FinalLSN != 0 || len(s.skip) == 0 {
		return nil
	}
	rels := []*change.Relation{c.Relation}
	if c.Op == change.OpTruncate {
		rels = c.Truncate.Relations
	}
	for _, r := range rels {
		if r == nil {
			continue
		}
		if l, ok := s.skip[r.QualifiedName()]; ok && c.LSN < l {
			return fmt.Errorf("a transaction forwarded before its commit changed %s at %s, before its snapshot's consistent point %s: whether the copy holds it is known only at its commit; set source.forward_streamed: off, remove the trail and capture again",
				r.QualifiedName(), c.LSN, l)
		}
	}
	return nil
}

// Close closes the inner sink.
func (s *Sink) Close(ctx context.Context) error { return s.inner.Close(ctx) }

func (s *Sink) skipped(tx *change.Tx, rel *change.Relation) bool {
	if tx == nil || tx.FinalLSN == 0 || len(s.skip) == 0 {
		return false // FinalLSN 0: forwarded, past every skip point (undecided)
	}
	l, ok := s.skip[rel.QualifiedName()]
	return ok && tx.FinalLSN < l
}

func (s *Sink) change(tx *change.Tx, c *change.Change) *change.Change {
	switch c.Op {
	case change.OpInsert, change.OpUpdate, change.OpDelete:
		if s.skipped(tx, c.Relation) {
			return nil
		}
		return s.rel.Change(c)
	case change.OpTruncate:
		t := *c.Truncate
		t.Relations = nil
		for _, r := range c.Truncate.Relations {
			if s.skipped(tx, r) {
				continue
			}
			if mr := s.rel.Relation(r); mr != nil {
				t.Relations = append(t.Relations, mr.rel)
			}
		}
		if len(t.Relations) == 0 {
			return nil
		}
		nc := *c
		nc.Truncate = &t
		return &nc
	}
	return c
}

// Relations rewrites source relations and rows. Safe for concurrent use.
type Relations struct {
	m     *Map
	mu    sync.Mutex
	cache map[*change.Relation]*Mapped
}

// Mapped is a source relation's target form.
type Mapped struct {
	rel  *change.Relation // nil: the table is excluded
	cols []int            // the kept source column indexes
	same bool             // nothing changes
}

// NewRelations returns a rewriter for m.
func NewRelations(m *Map) *Relations {
	return &Relations{m: m, cache: map[*change.Relation]*Mapped{}}
}

// Relation returns the target form of r, nil when r is excluded.
func (rs *Relations) Relation(r *change.Relation) *Mapped {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if m, ok := rs.cache[r]; ok {
		if m.rel == nil {
			return nil
		}
		return m
	}
	if len(rs.cache) > 10000 { // relations are replaced on schema changes
		clear(rs.cache)
	}
	m := rs.build(r)
	rs.cache[r] = m
	if m.rel == nil {
		return nil
	}
	return m
}

func (rs *Relations) build(r *change.Relation) *Mapped {
	if !rs.m.Includes(r.Schema, r.Name) {
		return &Mapped{}
	}
	ts, tn := rs.m.Target(r.Schema, r.Name)
	nr := &change.Relation{OID: r.OID, Schema: ts, Name: tn, ReplicaIdentity: r.ReplicaIdentity}
	index := make([]int, len(r.Columns))
	var cols []int
	for i, c := range r.Columns {
		name, ok := rs.m.Column(r.Schema, r.Name, c.Name)
		if !ok {
			index[i] = -1
			continue
		}
		index[i] = len(nr.Columns)
		c.Name = name
		nr.Columns = append(nr.Columns, c)
		cols = append(cols, i)
	}
	for _, k := range r.PrimaryKey {
		if index[k] >= 0 {
			nr.PrimaryKey = append(nr.PrimaryKey, index[k])
		}
	}
	same := len(cols) == len(r.Columns) && ts == r.Schema && tn == r.Name
	for i, c := range nr.Columns {
		same = same && c.Name == r.Columns[i].Name
	}
	if same {
		return &Mapped{rel: r, same: true}
	}
	return &Mapped{rel: nr, cols: cols}
}

// Change returns c rewritten for its target, nil when its table is
// excluded. c itself is not modified.
func (rs *Relations) Change(c *change.Change) *change.Change {
	m := rs.Relation(c.Relation)
	if m == nil {
		return nil
	}
	if m.same {
		return c
	}
	nc := *c
	nc.Relation = m.rel
	nc.Old = m.Row(c.Old)
	nc.New = m.Row(c.New)
	return &nc
}

// Relation is the target relation.
func (m *Mapped) Relation() *change.Relation { return m.rel }

// Row projects a source row onto the target columns.
func (m *Mapped) Row(r change.Row) change.Row {
	if r == nil || m.same {
		return r
	}
	out := make(change.Row, len(m.cols))
	for i, c := range m.cols {
		if c < len(r) {
			out[i] = r[c]
		}
	}
	return out
}
