package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcd-io/cdcd/pkg/dsn"
)

// publicationReplayTimeout bounds WaitPublication: a standby that has not
// replayed a publication's creation in this time is not replaying at all
// (paused, or cut off from its primary) rather than a little behind.
const publicationReplayTimeout = 30 * time.Second

// publicationPoll is how often WaitPublication looks at the standby.
const publicationPoll = 50 * time.Millisecond

// ErrPublicationNotReplayed is returned by WaitPublication (and
// PublicationOnPrimary) when the standby has not replayed the publication's
// creation within 30 seconds. It is not terminal: a retry waits again.
var ErrPublicationNotReplayed = errors.New("publication not replayed on the standby")

// PublicationExists reports whether publication pub exists on the server
// behind conn.
func PublicationExists(ctx context.Context, conn *pgx.Conn, pub string) (bool, error) {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, pub).Scan(&exists); err != nil {
		return false, fmt.Errorf("look up publication %s: %w", pub, err)
	}
	return exists, nil
}

// PublicationOnPrimary makes sure publication pub exists on the primary
// (primaryDSN) of the standby behind standby, then waits for the standby to
// replay it. A standby lags its primary, so the primary is where existence
// is decided: the publication is looked up there and, when missing, create
// is called with a connection to the primary. A create that fails with
// duplicate_object (SQLSTATE 42710: someone created it meanwhile) counts as
// success. create may return an error of its own to refuse (source.create
// off). created reports whether create made the publication.
func PublicationOnPrimary(ctx context.Context, standby *pgx.Conn, primaryDSN, pub string,
	create func(ctx context.Context, primary *pgx.Conn) error) (created bool, err error) {
	primary, err := pgx.Connect(ctx, primaryDSN)
	if err != nil {
		return false, fmt.Errorf("connect to primary %s: %w", dsn.Redact(primaryDSN), dsn.RedactError(err, dsn.Password(primaryDSN)))
	}
	defer primary.Close(context.WithoutCancel(ctx))
	exists, err := PublicationExists(ctx, primary, pub)
	if err != nil {
		return false, fmt.Errorf("on the primary: %w", err)
	}
	if !exists {
		switch err := create(ctx, primary); {
		case err == nil:
			created = true
		case isDuplicateObject(err):
			// Created by someone else between the look-up and the create.
		default:
			return false, err
		}
	}
	return created, WaitPublication(ctx, standby, pub)
}

// WaitPublication waits until publication pub, which exists on the primary,
// has been replayed by the standby behind standby. It gives up after 30s
// with ErrPublicationNotReplayed (the message names the publication and what
// to check), and returns ctx's error (wrapped) when ctx ends first.
func WaitPublication(ctx context.Context, standby *pgx.Conn, pub string) error {
	wctx, cancel := context.WithTimeout(ctx, publicationReplayTimeout)
	defer cancel()
	t := time.NewTicker(publicationPoll)
	defer t.Stop()
	for {
		exists, err := PublicationExists(wctx, standby, pub)
		if err == nil && exists {
			return nil
		}
		if err == nil {
			select {
			case <-t.C:
				continue
			case <-wctx.Done():
			}
		}
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("wait for the standby to replay publication %s: %w", pub, ctx.Err())
		case wctx.Err() != nil:
			return fmt.Errorf("%w: publication %s exists on the primary but the standby has not replayed it after %s: check that the standby replays WAL (SELECT pg_get_wal_replay_pause_state(), or pg_stat_wal_receiver for its link to the primary)",
				ErrPublicationNotReplayed, pub, publicationReplayTimeout)
		default:
			return fmt.Errorf("wait for the standby to replay publication %s: %w", pub, err)
		}
	}
}

// isDuplicateObject reports whether err is PostgreSQL's duplicate_object
// (SQLSTATE 42710), which CREATE PUBLICATION returns when it exists.
func isDuplicateObject(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42710"
}
