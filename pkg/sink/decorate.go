package sink

import (
	"context"
	"time"
)

// Decorate returns outer — a decorator around inner that overrides Apply
// or Close (metrics, a column mapping) — as a sink with inner's optional
// abilities, each forwarded to inner: it is a PositionStore, an
// AsyncCommitter and a BatchPacer exactly when inner is one (the pacer
// delay of a sink without one is zero, no pacing). A decorator must not
// hide them: apply finds them by type assertion, and an AsyncCommitter
// seen as a plain PositionStore would be reported durable before it is.
func Decorate(outer, inner Sink) Sink {
	d := decorated{Sink: outer, inner: inner}
	if ac, ok := inner.(AsyncCommitter); ok {
		return decoratedAsync{decoratedStore{d, ac}, ac}
	}
	if ps, ok := inner.(PositionStore); ok {
		return decoratedStore{d, ps}
	}
	return d
}

type decorated struct {
	Sink
	inner Sink
}

func (d decorated) MinBatchDelay() time.Duration {
	if p, ok := d.inner.(BatchPacer); ok {
		return p.MinBatchDelay()
	}
	return 0
}

type decoratedStore struct {
	decorated
	ps PositionStore
}

func (d decoratedStore) Position(ctx context.Context) (Position, error) { return d.ps.Position(ctx) }

type decoratedAsync struct {
	decoratedStore
	ac AsyncCommitter
}

func (d decoratedAsync) Durable() Position { return d.ac.Durable() }

func (d decoratedAsync) RefreshDurable(ctx context.Context) (Position, error) {
	return d.ac.RefreshDurable(ctx)
}

var (
	_ BatchPacer     = decorated{}
	_ PositionStore  = decoratedStore{}
	_ AsyncCommitter = decoratedAsync{}
)
