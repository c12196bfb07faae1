package trigger_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

// testTimeout bounds each test's work on slow shared machines.
const testTimeout = 5 * time.Minute

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// connect opens a connection to database postgres as user (the superuser
// when empty).
func connect(t testing.TB, c *pgtest.Cluster, user string) *pgx.Conn {
	t.Helper()
	dsn := c.DSN("postgres")
	if user != "" {
		dsn = strings.Replace(dsn, "//postgres@", "//"+user+"@", 1)
	}
	conn, err := pgx.Connect(testCtx(t), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// replica is an in-memory copy of captured tables: table -> key -> row.
type replica map[string]map[string][]string

// apply applies one transaction's changes in order; it fails on changes
// that do not fit the replica (an insert of an existing key, an update or
// delete of a missing one), which a row read twice or missed would cause.
func (r replica) apply(tx trigger.Tx) error {
	for _, c := range tx.Changes {
		if c.Op == change.OpTruncate {
			for _, rel := range c.Truncate.Relations {
				delete(r, rel.QualifiedName())
			}
			continue
		}
		name := c.Relation.QualifiedName()
		m := r[name]
		if m == nil {
			m = map[string][]string{}
			r[name] = m
		}
		switch c.Op {
		case change.OpInsert:
			k := key(c.Relation, c.New)
			if _, dup := m[k]; dup {
				return fmt.Errorf("tx %d: insert of existing key %q in %s", tx.XID, k, name)
			}
			m[k] = texts(c.New)
		case change.OpUpdate:
			k := key(c.Relation, c.New)
			old := k
			if c.Old != nil {
				old = key(c.Relation, c.Old)
			}
			if _, ok := m[old]; !ok {
				return fmt.Errorf("tx %d: update of missing key %q in %s", tx.XID, old, name)
			}
			delete(m, old)
			m[k] = texts(c.New)
		case change.OpDelete:
			k := key(c.Relation, c.Old)
			if _, ok := m[k]; !ok {
				return fmt.Errorf("tx %d: delete of missing key %q in %s", tx.XID, k, name)
			}
			delete(m, k)
		default:
			return fmt.Errorf("tx %d: unexpected op %s", tx.XID, c.Op)
		}
	}
	return nil
}

func key(rel *change.Relation, row change.Row) string {
	var parts []string
	for _, i := range rel.KeyColumns() {
		parts = append(parts, row[i].String())
	}
	return strings.Join(parts, "\x00")
}

func texts(row change.Row) []string {
	out := make([]string, len(row))
	for i, v := range row {
		out[i] = v.String()
	}
	return out
}

// tableTexts reads a table as the replica holds it: key -> column texts,
// in text output form under the settings the triggers pin.
func tableTexts(t testing.TB, conn *pgx.Conn, table string, keyCols int) map[string][]string {
	t.Helper()
	ctx := testCtx(t)
	_, err := conn.Exec(ctx, `SET datestyle = 'ISO, YMD'; SET intervalstyle = 'postgres'; SET extra_float_digits = 3;
		SET bytea_output = 'hex'; SET timezone = 'UTC'`)
	require.NoError(t, err)
	rows, err := conn.Query(ctx, "SELECT * FROM "+table, pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		raw := rows.RawValues()
		row := make([]string, len(raw))
		for i, v := range raw {
			if v == nil {
				row[i] = "<null>"
			} else {
				row[i] = string(v)
			}
		}
		out[strings.Join(row[:keyCols], "\x00")] = row
	}
	require.NoError(t, rows.Err())
	return out
}
