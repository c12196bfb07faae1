package verify

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
)

// repair re-copies range r of t: in one target transaction (as a
// replication session, so triggers and foreign keys stay quiet like the
// sink's) it deletes the range's rows and copies the source's (from the
// source snapshot on src) in their place. The sink is held meanwhile, so
// the stream resumes exactly where the repaired rows stand.
func repair(ctx context.Context, src, dst *pgx.Conn, t *table, r krange) error {
	tx, err := dst.Begin(ctx)
	if err != nil {
		return fmt.Errorf("repair %s: %w", t.Target, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit: a no-op
	if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
		return fmt.Errorf("repair %s: %w", t.Target, err)
	}
	d := t.dst()
	if _, err := tx.Exec(ctx, "DELETE FROM ONLY "+d.name+t.cond(d, r)); err != nil {
		return fmt.Errorf("repair %s: delete the range: %w", t.Target, err)
	}
	s := t.src()
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		_, err := src.PgConn().CopyTo(ctx, pw, "COPY (SELECT "+strings.Join(s.cols, ", ")+" FROM ONLY "+s.name+t.cond(s, r)+") TO STDOUT")
		pw.CloseWithError(err)
		errc <- err
	}()
	_, err = dst.PgConn().CopyFrom(ctx, pr, "COPY "+d.name+" ("+strings.Join(d.cols, ", ")+") FROM STDIN")
	pr.CloseWithError(err)
	if serr := <-errc; serr != nil {
		return fmt.Errorf("repair %s: read the source range: %w", t.Target, serr)
	}
	if err != nil {
		return fmt.Errorf("repair %s: copy the range: %w", t.Target, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("repair %s: %w", t.Target, err)
	}
	return nil
}
