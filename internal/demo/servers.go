package demo

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/cdcd-io/cdcd/internal/dynalitetest"
	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// db is the database the demo uses on every server.
const db = "postgres"

// servers are the demo's throwaway clusters, and dynalite when DynamoDB is
// the target.
type servers struct {
	a, b, c *pgtest.Cluster
	ddb     *dynalitetest.Server
}

// startServers starts A (primary), B (its physical standby) and, with
// target, C. C starts beside A and B; on error, whatever started is stopped
// again.
func startServers(ctx context.Context, target bool) (*servers, error) {
	s := &servers{}
	var wg sync.WaitGroup
	var errA, errC error
	wg.Go(func() {
		s.a, errA = pgtest.Start(ctx, pgtest.Options{Version: pgtest.V17, Name: "demo-A"})
		if errA != nil {
			return
		}
		s.b, errA = s.a.StartStandby(ctx, pgtest.Options{Name: "demo-B"})
	})
	if target {
		wg.Go(func() {
			s.c, errC = pgtest.Start(ctx, pgtest.Options{Version: pgtest.V17, Name: "demo-C"})
		})
	}
	wg.Wait()
	if err := errors.Join(errA, errC); err != nil {
		return nil, errors.Join(err, s.stop())
	}
	return s, nil
}

// stop shuts down and removes every server that was started, the standby
// before its primary. It may be called more than once.
func (s *servers) stop() error {
	var errs []error
	for _, c := range []*pgtest.Cluster{s.b, s.a, s.c} {
		if c != nil {
			errs = append(errs, c.Stop())
		}
	}
	if s.ddb != nil {
		s.ddb.Close()
	}
	return errors.Join(errs...)
}

// Sample tables in the shape of common Aurora migration guides. The target
// gets the same DDL: cdcd does not create schemas yet.
var schema = []string{
	`CREATE SCHEMA app`,
	`CREATE TABLE app.orders (
		order_id         bigint PRIMARY KEY,
		customer         text,
		product          text,
		description      text,
		delivery_address text,
		order_date       timestamptz,
		notes            text
	)`,
	`CREATE TABLE public.employee (
		id         serial PRIMARY KEY,
		name       text,
		department text,
		salary     numeric(12,2),
		hire_date  date
	)`,
}

// tables are the demo's tables with the key their rows are ordered by when
// hashed.
var tables = []struct{ name, key string }{
	{"app.orders", "order_id"},
	{"public.employee", "id"},
}

// createSchema creates the tables on A and C and the publication on A.
func (s *servers) createSchema(ctx context.Context) error {
	if err := s.a.Exec(ctx, db, append(schema, `CREATE PUBLICATION cdcd FOR ALL TABLES`)...); err != nil {
		return fmt.Errorf("create tables on A: %w", err)
	}
	if s.c == nil {
		return nil
	}
	if err := s.c.Exec(ctx, db, schema...); err != nil {
		return fmt.Errorf("create tables on C: %w", err)
	}
	return nil
}
