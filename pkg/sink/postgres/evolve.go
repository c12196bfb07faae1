package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/schema"
)

// Schema changes arriving in the stream. pgoutput sends a new Relation
// message after a table's columns change; the sink sees a new relation and
// looks its target table up again (catalog.go). Here it brings the target
// along, inside the open target transaction, so the DDL commits with the
// first rows that need it (and rolls back with them):
//
//   - a table the target lacks is created (Config.CreateSchema), from the
//     source catalog when Config.SourceTable can read it (types, constant
//     defaults, NOT NULL, primary key), else from the Relation message;
//   - a column the target lacks is added (Config.CreateSchema) with the
//     source's constant default, so rows the source filled with it when
//     the column was added (no change is streamed for those) match;
//   - a column the source dropped is no longer written: it stays on the
//     target, and the sink logs it once;
//   - a column whose type changed on the source must have that type on the
//     target, or the sink stops naming table, column and the ALTER to run.

// builtinOID is FirstNormalObjectId: type OIDs below it are built in and
// the same on every server.
const builtinOID = 16384

// evolve compares rel with the last relation seen for the same source table
// and logs dropped columns; it returns the dropped columns and the columns
// of rel whose type changed.
func (s *Sink) evolve(rel *change.Relation) (dropped []string, retyped []int) {
	prev := s.lastRel[rel.OID]
	s.lastRel[rel.OID] = rel
	if prev == nil || prev == rel {
		return nil, nil
	}
	for _, pc := range prev.Columns {
		i := rel.Column(pc.Name)
		if i < 0 {
			s.log.Info("column dropped on the source: no longer written, left on the target",
				"table", targetFor(rel).String(), "column", pc.Name)
			dropped = append(dropped, pc.Name)
			continue
		}
		if c := rel.Columns[i]; c.TypeOID != pc.TypeOID || c.TypeMod != pc.TypeMod {
			retyped = append(retyped, i)
		}
	}
	return dropped, retyped
}

// relaxDropped drops NOT NULL from target columns the source dropped, when
// the sink manages the schema: rows written without them must fit.
func (s *Sink) relaxDropped(ctx context.Context, rel *change.Relation, dropped []string) error {
	if !s.cfg.CreateSchema {
		return nil
	}
	tgt := targetFor(rel)
	if s.dsqlMode() && len(dropped) > 0 {
		// No DDL in a transaction that writes rows on DSQL.
		s.log.Warn("columns dropped on the source: the aurora-dsql flavor leaves the target as it is; drop their NOT NULL by hand if they have one",
			"table", tgt.String(), "columns", dropped)
		return nil
	}
	for _, name := range dropped {
		var notNull bool
		err := s.conn.QueryRow(ctx, `SELECT coalesce((SELECT a.attnotnull FROM pg_catalog.pg_attribute a
			WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped), false)`, tgt.sql(), name).Scan(&notNull)
		if err != nil {
			return fmt.Errorf("reading target column %s.%s: %w", tgt, name, err)
		}
		if !notNull {
			continue
		}
		if _, err := s.conn.Exec(ctx, "ALTER TABLE "+tgt.sql()+" ALTER COLUMN "+pgx.Identifier{name}.Sanitize()+" DROP NOT NULL"); err != nil {
			return fmt.Errorf("dropping NOT NULL of target column %s.%s, which the source dropped: %w", tgt, name, err)
		}
		s.ddl = true
		s.log.Info("column dropped on the source: its NOT NULL dropped on the target", "table", tgt.String(), "column", name)
	}
	return nil
}

// sourceType is the SQL type of a relation's column, with its modifier:
// format_type on the target for a built-in type (same OIDs everywhere),
// else the name the Type message gave.
func sourceType(ctx context.Context, q querier, c change.Column) (string, error) {
	if c.TypeOID >= builtinOID {
		if c.TypeName == "" {
			return "", fmt.Errorf("column %s has type OID %d, which the source did not name", c.Name, c.TypeOID)
		}
		return c.TypeName, nil
	}
	rows, err := q.Query(ctx, `SELECT format_type($1, $2)`, c.TypeOID, c.TypeMod)
	if err != nil {
		return "", fmt.Errorf("naming the type of column %s: %w", c.Name, err)
	}
	typ, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("naming the type of column %s: %w", c.Name, err)
	}
	return typ, nil
}

// definition is the target table for rel as schema.Ensure creates it:
// named and ordered as rel (the mapping may have renamed things), with
// types, defaults, NOT NULL and primary key from the source catalog where
// Config.SourceTable reads them.
func (s *Sink) definition(ctx context.Context, q querier, rel *change.Relation) (*schema.Table, error) {
	tgt := targetFor(rel)
	t := &schema.Table{OID: rel.OID, Source: schema.Name{Schema: rel.Schema, Name: rel.Name}, Target: schema.Name{Schema: tgt.schema, Name: tgt.name}}
	var src *schema.Table
	if s.cfg.SourceTable != nil {
		var err error
		if src, err = s.cfg.SourceTable(ctx, rel.OID); err != nil {
			s.log.Warn("reading the source table's definition failed: creating from the replication stream's (no defaults, no NOT NULL)",
				"table", tgt.String(), "error", err)
			src = nil
		}
	}
	for _, c := range rel.Columns {
		col := schema.Column{Source: c.Name, Name: c.Name, TypeOID: c.TypeOID}
		if src != nil {
			if i := src.Column(c.Name); i >= 0 && src.Columns[i].TypeOID == c.TypeOID {
				sc := src.Columns[i]
				col.Type, col.BaseType, col.Default, col.NotNull = sc.Type, sc.BaseType, sc.Default, sc.NotNull
			}
		}
		if col.Type == "" {
			typ, err := sourceType(ctx, q, c)
			if err != nil {
				return nil, fmt.Errorf("target table %s: %w", tgt, err)
			}
			col.Type = typ
		}
		t.Columns = append(t.Columns, col)
	}
	if src != nil {
		t.Types = src.Types
		if !slices.ContainsFunc(src.PrimaryKey, func(k string) bool { return rel.Column(k) < 0 }) {
			t.PrimaryKey = src.PrimaryKey
		}
	}
	if t.PrimaryKey == nil {
		for _, k := range rel.KeyColumns() {
			t.PrimaryKey = append(t.PrimaryKey, rel.Columns[k].Name)
		}
	}
	return t, nil
}

// createTable creates rel's missing target table in the open transaction.
func (s *Sink) createTable(ctx context.Context, rel *change.Relation) error {
	def, err := s.definition(ctx, s.conn, rel)
	if err != nil {
		return err
	}
	// The flavor's DDL (Citus distributes the table).
	if _, err := s.EnsureTables(ctx, []*schema.Table{def}, true, false); err != nil {
		return err
	}
	s.ddl = true
	s.log.Info("created target table from the replication stream", "table", def.Target.String(), "columns", len(def.Columns),
		"primary_key", def.PrimaryKey)
	return nil
}

// addColumns adds rel's columns missing from its target table in the open
// transaction, with the source's constant default.
func (s *Sink) addColumns(ctx context.Context, rel *change.Relation, missing []string) error {
	def, err := s.definition(ctx, s.conn, rel)
	if err != nil {
		return err
	}
	for _, name := range missing {
		c := def.Columns[def.Column(name)]
		stmt := "ALTER TABLE " + targetFor(rel).sql() + " ADD COLUMN IF NOT EXISTS " + pgx.Identifier{c.Name}.Sanitize() + " " + c.Type
		if c.Default != "" {
			stmt += " DEFAULT " + c.Default
		}
		if _, err := s.conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("adding column %s to target table %s: %w", c.Name, targetFor(rel), err)
		}
		s.ddl = true
		s.log.Info("column added on the source: added on the target", "table", targetFor(rel).String(), "column", c.Name,
			"type", c.Type, "default", c.Default)
	}
	return nil
}

// checkRetyped stops the sink when a column whose type changed on the
// source has another type on the target.
func (s *Sink) checkRetyped(ctx context.Context, q querier, rel *change.Relation, retyped []int) error {
	tgt := targetFor(rel)
	for _, i := range retyped {
		c := rel.Columns[i]
		want, err := sourceType(ctx, q, c)
		if err != nil {
			return err
		}
		rows, err := q.Query(ctx, `SELECT format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
			WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped`, tgt.sql(), c.Name)
		if err != nil {
			return fmt.Errorf("reading target column %s.%s: %w", tgt, c.Name, err)
		}
		have, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("reading target column %s.%s: %w", tgt, c.Name, err)
		}
		if have != want {
			return fmt.Errorf("column %s.%s changed type on the source to %s, the target column is %s and may not hold the new values: run ALTER TABLE %s ALTER COLUMN %s TYPE %s on the target, then restart cdcd",
				tgt, c.Name, want, have, tgt.sql(), pgx.Identifier{c.Name}.Sanitize(), want)
		}
		s.log.Info("column type changed on the source; the target column has the new type", "table", tgt.String(), "column", c.Name, "type", want)
	}
	return nil
}
