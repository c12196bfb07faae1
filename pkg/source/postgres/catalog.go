package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// FillPrimaryKey sets rel.PrimaryKey from the catalog. pgoutput flags the
// replica-identity columns, which under REPLICA IDENTITY FULL are all of
// them, so the real key must come from pg_index.
func (s *Source) FillPrimaryKey(ctx context.Context, rel *change.Relation) error {
	rows, err := s.catalog.Query(ctx, `
		SELECT a.attname
		FROM pg_index i
		JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) ON true
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1::oid AND i.indisprimary
		ORDER BY k.ord`, rel.OID)
	if err != nil {
		return classify(fmt.Errorf("read primary key of %s: %w", rel.QualifiedName(), err))
	}
	defer rows.Close()
	var pk []int
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return err
		}
		i := rel.Column(name)
		if i < 0 {
			return fmt.Errorf("%w: primary key column %s of %s is not in the published columns: publish every key column", errKeyNotPublished, name, rel.QualifiedName())
		}
		pk = append(pk, i)
	}
	if err := rows.Err(); err != nil {
		return classify(fmt.Errorf("read primary key of %s: %w", rel.QualifiedName(), err))
	}
	rel.PrimaryKey = pk
	return nil
}

// errKeyNotPublished: a primary-key column is missing from the Relation.
var errKeyNotPublished = errors.New("key column not published")

// immediateKey reports whether the columns rel flags as its replica
// identity are those of the table's committed primary key, counting a
// DEFERRABLE one as none (PostgreSQL does not use it as the identity).
func (s *Source) immediateKey(ctx context.Context, rel *change.Relation) (bool, error) {
	rows, err := s.catalog.Query(ctx, `
		SELECT a.attname
		FROM pg_index i
		JOIN LATERAL unnest(i.indkey::int2[]) AS k(attnum) ON true
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1::oid AND i.indisprimary AND i.indimmediate`, rel.OID)
	if err != nil {
		return false, classify(fmt.Errorf("read primary key of %s: %w", rel.QualifiedName(), err))
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return false, err
		}
		if i := rel.Column(name); i < 0 || !rel.Columns[i].Key {
			return false, nil
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return false, classify(fmt.Errorf("read primary key of %s: %w", rel.QualifiedName(), err))
	}
	flagged := 0
	for _, c := range rel.Columns {
		if c.Key {
			flagged++
		}
	}
	return n == flagged, nil
}

// Heartbeat emits a transactional logical decoding message on the primary
// (the source itself, or PrimaryDSN when the source is a standby), so the
// slot receives a transaction to acknowledge even when the database is idle.
// It returns false when heartbeats cannot be sent from here (a standby
// without PrimaryDSN).
func (s *Source) Heartbeat(ctx context.Context) (bool, error) {
	const stmt = `SELECT pg_logical_emit_message(true, 'cdcd.heartbeat', now()::text)`
	if s.Standby {
		if s.cfg.PrimaryDSN == "" {
			return false, nil
		}
		return true, onPrimary(ctx, s.cfg.PrimaryDSN, stmt)
	}
	_, err := s.catalog.Exec(ctx, stmt)
	return true, err
}

// HeartbeatPrefix is the logical message prefix of cdcd's heartbeats; sinks
// ignore messages with it.
const HeartbeatPrefix = "cdcd.heartbeat"

// committedColumns reports whether the catalog, which shows committed DDL
// only, names rel as rel does and has rel's columns, in rel's order, with
// the same types (a publication's column list may leave some out).
func (s *Source) committedColumns(ctx context.Context, rel *change.Relation) (bool, error) {
	rows, err := s.catalog.Query(ctx, `
		SELECT n.nspname, c.relname, a.attname, a.atttypid, a.atttypmod
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE c.oid = $1::oid
		ORDER BY a.attnum`, rel.OID)
	if err != nil {
		return false, classify(fmt.Errorf("read columns of %s: %w", rel.QualifiedName(), err))
	}
	defer rows.Close()
	next := 0
	for rows.Next() {
		var ns, name, col string
		var typ uint32
		var mod int32
		if err := rows.Scan(&ns, &name, &col, &typ, &mod); err != nil {
			return false, err
		}
		if ns != rel.Schema || name != rel.Name {
			return false, nil
		}
		if next < len(rel.Columns) && rel.Columns[next].Name == col {
			if c := rel.Columns[next]; c.TypeOID != typ || c.TypeMod != mod {
				return false, nil
			}
			next++
		}
	}
	if err := rows.Err(); err != nil {
		return false, classify(fmt.Errorf("read columns of %s: %w", rel.QualifiedName(), err))
	}
	return next == len(rel.Columns), nil
}
