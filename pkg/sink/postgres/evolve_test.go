package postgres

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// typedRel is a relation with OID 7001 whose columns are name/type-OID/typmod.
func typedRel(cols ...change.Column) *change.Relation {
	r := &change.Relation{OID: 7001, Schema: "app", Name: "ev", ReplicaIdentity: 'd', Columns: cols}
	for i, c := range cols {
		if c.Key {
			r.PrimaryKey = append(r.PrimaryKey, i)
		}
	}
	return r
}

const (
	oidInt4    = 23
	oidInt8    = 20
	oidText    = 25
	oidNumeric = 1700
)

// TestSchemaEvolution: with CreateSchema, a table missing on the target is
// created from the Relation message, an added column is added before the
// first row carrying it, a dropped column stays (its NOT NULL relaxed), and
// a type change the target column does not have stops the sink naming the
// column and the ALTER to run.
func TestSchemaEvolution(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `CREATE SCHEMA app`)
	s, err := New(context.Background(), Config{Name: "evo", DSN: e.dsn, CreateSchema: true}, testLogger(t))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close(context.Background()) })

	id := change.Column{Name: "id", TypeOID: oidInt8, TypeMod: -1, Key: true}
	amount := change.Column{Name: "amount", TypeOID: oidNumeric, TypeMod: (10<<16 | 2) + 4}
	note := change.Column{Name: "note", TypeOID: oidText, TypeMod: -1}
	v1 := typedRel(id, amount)
	apply(t, s, 1, ins(v1, "1", "1.50"))
	require.Equal(t, []string{"id|bigint|NO", "amount|numeric|YES"},
		e.rows(`SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'ev' ORDER BY ordinal_position`))
	require.Equal(t, []string{"ev_pkey"}, e.rows(`SELECT conname FROM pg_constraint WHERE conrelid = 'app.ev'::regclass AND contype = 'p'`))

	v2 := typedRel(id, amount, note)
	apply(t, s, 2, ins(v2, "2", "2.25", "hello"), upd(v2, "1", "1.50", "later"))
	require.Equal(t, []string{"1|1.50|later", "2|2.25|hello"}, e.rows(`SELECT * FROM app.ev ORDER BY id`))

	e.exec(`ALTER TABLE app.ev ALTER COLUMN amount SET NOT NULL`)
	v3 := typedRel(id, note)
	apply(t, s, 3, ins(v3, "3", "amount dropped"))
	require.Equal(t, []string{"3|<null>|amount dropped"}, e.rows(`SELECT * FROM app.ev WHERE id = 3`))

	bigger := note
	bigger.TypeOID, bigger.TypeMod = oidInt4, -1
	v4 := typedRel(id, bigger)
	err = s.Apply(context.Background(), batch(4, tx(ins(v4, "4", "7"))))
	require.ErrorContains(t, err, `column app.ev.note changed type on the source to integer, the target column is text and may not hold the new values: run ALTER TABLE "app"."ev" ALTER COLUMN "note" TYPE integer on the target, then restart cdcd`)
	require.False(t, sink.IsRetriable(err))
	require.Equal(t, []string{"3"}, e.rows(`SELECT seq FROM cdcd.checkpoint WHERE name = 'evo'`))
}

// TestSchemaEvolutionRolledBack: DDL made for a batch that fails is rolled
// back with it, and the sink makes it again on the retry.
func TestSchemaEvolutionRolledBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `CREATE SCHEMA app`)
	s, err := New(context.Background(), Config{Name: "evo", DSN: e.dsn, CreateSchema: true}, testLogger(t))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close(context.Background()) })
	r := typedRel(change.Column{Name: "id", TypeOID: oidInt4, TypeMod: -1, Key: true}, change.Column{Name: "n", TypeOID: oidInt4, TypeMod: -1})
	err = s.Apply(context.Background(), batch(1, tx(ins(r, "1", "not a number"))))
	require.Error(t, err)
	require.Empty(t, e.rows(`SELECT 1 FROM pg_class WHERE relname = 'ev'`), "the CREATE TABLE rolled back with the batch")
	apply(t, s, 1, ins(r, "1", "5"))
	require.Equal(t, []string{"1|5"}, e.rows(`SELECT * FROM app.ev`))
}
