package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/dsn"
	"github.com/cdcd-io/cdcd/pkg/mapping"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
)

// PreparePublication makes the stream honour the mappings' row filters:
// they become publication row filters (PostgreSQL 15+), so the source
// sends only matching rows — and turns an update that moves a row out of
// (into) the filter into a delete (insert). Without row filters it does
// nothing and capture creates its FOR ALL TABLES publication as before.
//
// A missing publication is created (source.create) FOR TABLE with every
// included table, the filters attached; note that tables created later are
// then not published until added. An existing publication must carry a
// filter on every filtered table. Either way, a filter on a column outside
// the table's replica identity is refused: PostgreSQL would make every
// UPDATE and DELETE of that table fail on the source.
func PreparePublication(ctx context.Context, cfg postgres.Config, m *mapping.Map, log *slog.Logger) error {
	if m == nil || !m.HasWhere() {
		return nil
	}
	cfg = cfg.Defaults()
	conn, err := pgx.Connect(ctx, cfg.DSN)
	if err != nil {
		return fmt.Errorf("connect to source %s: %w", dsn.Redact(cfg.DSN), dsn.RedactError(err, dsn.Password(cfg.DSN)))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var version int
	var standby, exists bool
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, pg_is_in_recovery(),
		EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, cfg.Publication).Scan(&version, &standby, &exists); err != nil {
		return fmt.Errorf("read source version: %w", err)
	}
	if version < 150000 {
		return errors.New("mappings[].where needs publication row filters, PostgreSQL 15 or later on the source: remove the where or upgrade")
	}
	if exists {
		return checkPublication(ctx, conn, cfg.Publication, m)
	}
	missing := func() error {
		return fmt.Errorf("publication %s does not exist: create it FOR TABLE … WHERE (…) with the mappings' row filters, or set source.create: true", cfg.Publication)
	}
	if !standby {
		if !cfg.Create {
			return missing()
		}
		return createPublication(ctx, conn, cfg.Publication, m, log)
	}
	if cfg.PrimaryDSN == "" {
		if !cfg.Create {
			return missing()
		}
		return fmt.Errorf("publication %s does not exist and the source is a standby: create it on the primary or set source.primary_dsn", cfg.Publication)
	}
	// The standby may lag: the primary says whether the publication exists,
	// and it is created there; the standby then has to replay it.
	created, err := postgres.PublicationOnPrimary(ctx, conn, cfg.PrimaryDSN, cfg.Publication, func(ctx context.Context, primary *pgx.Conn) error {
		if !cfg.Create {
			return missing()
		}
		return createPublication(ctx, primary, cfg.Publication, m, log)
	})
	if err != nil || created {
		return err
	}
	return checkPublication(ctx, conn, cfg.Publication, m) // made by someone else
}

// createPublication creates publication pub through ddl FOR TABLE with every
// table m includes and m's row filters, and checks it before committing.
func createPublication(ctx context.Context, ddl *pgx.Conn, pub string, m *mapping.Map, log *slog.Logger) error {
	rows, err := ddl.Query(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
		ORDER BY 1, 2`)
	if err != nil {
		return fmt.Errorf("list source tables: %w", err)
	}
	var items []string
	for rows.Next() {
		var s, t string
		if err := rows.Scan(&s, &t); err != nil {
			rows.Close()
			return fmt.Errorf("list source tables: %w", err)
		}
		if !m.Includes(s, t) {
			continue
		}
		item := pgx.Identifier{s, t}.Sanitize()
		if w := m.Where(s, t); w != "" {
			item += " WHERE (" + w + ")"
		}
		items = append(items, item)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list source tables: %w", err)
	}
	if len(items) == 0 {
		return errors.New("no source table matches tables.include/exclude: nothing to publish")
	}
	tx, err := ddl.Begin(ctx)
	if err != nil {
		return fmt.Errorf("create publication %s: %w", pub, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "CREATE PUBLICATION "+pgx.Identifier{pub}.Sanitize()+" FOR TABLE "+strings.Join(items, ", ")); err != nil {
		return fmt.Errorf("create publication %s with row filters: %w", pub, err)
	}
	if err := checkPublication(ctx, tx.Conn(), pub, m); err != nil {
		return err // rolled back
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("create publication %s: %w", pub, err)
	}
	log.Info("created publication with row filters", "publication", pub, "tables", len(items))
	return nil
}

// checkPublication makes sure every filtered table has a row filter in the
// publication and that no filter uses a column outside the replica identity.
func checkPublication(ctx context.Context, conn *pgx.Conn, pub string, m *mapping.Map) error {
	for _, t := range m.Tables() {
		if t.Where == "" {
			continue
		}
		s, n, _ := strings.Cut(t.From, ".")
		var filter *string
		err := conn.QueryRow(ctx, `SELECT rowfilter FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3`,
			pub, s, n).Scan(&filter)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && filter == nil) {
			return fmt.Errorf("publication %s has no row filter for %s, which mappings filter: ALTER PUBLICATION %s SET TABLE … %s WHERE (%s)",
				pub, t.From, pub, t.From, t.Where)
		}
		if err != nil {
			return fmt.Errorf("read publication %s: %w", pub, err)
		}
	}
	rows, err := conn.Query(ctx, `
SELECT n.nspname || '.' || c.relname, a.attname
FROM pg_publication_rel pr
JOIN pg_publication p ON p.oid = pr.prpubid
JOIN pg_class c ON c.oid = pr.prrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_depend d ON d.classid = 'pg_publication_rel'::regclass AND d.objid = pr.oid AND d.refobjid = pr.prrelid AND d.refobjsubid > 0
JOIN pg_attribute a ON a.attrelid = pr.prrelid AND a.attnum = d.refobjsubid
WHERE p.pubname = $1 AND pr.prqual IS NOT NULL AND c.relreplident <> 'f'
  AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid
      AND (CASE WHEN c.relreplident = 'i' THEN i.indisreplident ELSE c.relreplident = 'd' AND i.indisprimary END)
      AND a.attnum = ANY (i.indkey))`, pub)
	if err != nil {
		return fmt.Errorf("check row filters of publication %s: %w", pub, err)
	}
	defer rows.Close()
	for rows.Next() {
		var table, col string
		if err := rows.Scan(&table, &col); err != nil {
			return err
		}
		return fmt.Errorf("the row filter on %s uses column %s, which is not in its replica identity: PostgreSQL would reject every UPDATE and DELETE on it; filter on key columns or ALTER TABLE %s REPLICA IDENTITY FULL",
			table, col, table)
	}
	return rows.Err()
}
