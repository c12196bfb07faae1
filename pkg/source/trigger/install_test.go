package trigger_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

// TestBadInput: a table without a key, a role without the privileges, and a
// change log dropped by hand are each one clear error.
func TestBadInput(t *testing.T) {
	c := pgtest.StartT(t, pgtest.Options{Name: "source"})
	c.ExecT(t, "postgres",
		`CREATE TABLE keyed (id int PRIMARY KEY, v text)`,
		`CREATE TABLE "no key" (a int, b text)`,
		`CREATE ROLE weak LOGIN`,
		`GRANT USAGE ON SCHEMA public TO weak`,
		`GRANT CONNECT ON DATABASE postgres TO weak`)
	conn := connect(t, c, "")
	ctx := testCtx(t)

	t.Run("no key", func(t *testing.T) {
		err := trigger.Install(ctx, conn, []trigger.Table{{Schema: "public", Name: "keyed"}, {Schema: "public", Name: "no key"}}, trigger.Options{})
		require.ErrorIs(t, err, trigger.ErrNoKey)
		require.Contains(t, err.Error(), `"public"."no key"`)
		require.Contains(t, err.Error(), "add a primary key")
		require.NotContains(t, err.Error(), "keyed")
		var exists bool
		require.NoError(t, conn.QueryRow(ctx, `SELECT to_regclass('cdcd.change_log') IS NOT NULL`).Scan(&exists))
		require.False(t, exists, "nothing was installed")
		t.Log(err)
	})

	t.Run("no privilege", func(t *testing.T) {
		weak := connect(t, c, "weak")
		err := trigger.Install(ctx, weak, []trigger.Table{{Schema: "public", Name: "keyed"}}, trigger.Options{})
		require.ErrorIs(t, err, trigger.ErrPrivilege)
		require.Contains(t, err.Error(), "CREATE on database postgres")
		require.Contains(t, err.Error(), `TRIGGER on table "public"."keyed" (GRANT TRIGGER ON "public"."keyed" TO "weak")`)
		t.Log(err)
	})

	t.Run("log dropped", func(t *testing.T) {
		require.NoError(t, trigger.Install(ctx, conn, []trigger.Table{{Schema: "public", Name: "keyed"}}, trigger.Options{}))
		pos, err := trigger.Start(ctx, conn)
		require.NoError(t, err)
		c.ExecT(t, "postgres", `INSERT INTO keyed VALUES (1, 'a')`, `DROP TABLE cdcd.change_log`)
		_, err = trigger.NewReader().Poll(ctx, conn, pos)
		require.ErrorIs(t, err, trigger.ErrNotInstalled)
		require.Contains(t, err.Error(), "cdcd.change_log is missing")
		require.Contains(t, err.Error(), "cdcd trigger install")
		t.Log(err)
		// Nothing is lost silently: writes fail until it is reinstalled.
		_, err = conn.Exec(ctx, `INSERT INTO keyed VALUES (2, 'b')`)
		require.ErrorContains(t, err, `relation "cdcd.change_log" does not exist`)
		_, err = trigger.Ack(ctx, conn, pos)
		require.ErrorIs(t, err, trigger.ErrNotInstalled)
		require.NoError(t, trigger.Install(ctx, conn, []trigger.Table{{Schema: "public", Name: "keyed"}}, trigger.Options{}))
		_, err = conn.Exec(ctx, `INSERT INTO keyed VALUES (2, 'b')`)
		require.NoError(t, err)
	})

	t.Run("no position", func(t *testing.T) {
		_, err := trigger.NewReader().Poll(ctx, conn, trigger.Snapshot{})
		require.ErrorIs(t, err, trigger.ErrNoPosition)
	})
}

// TestOrdinaryRole: a role with no REPLICATION and no superuser installs,
// polls and acknowledges with CREATE on the database and TRIGGER on the
// table; the application's role needs nothing on schema cdcd. Install is
// idempotent and Uninstall removes everything.
func TestOrdinaryRole(t *testing.T) {
	c := pgtest.StartT(t, pgtest.Options{Name: "source"})
	c.ExecT(t, "postgres",
		`CREATE TABLE app (id int PRIMARY KEY, v text)`,
		`CREATE TABLE hist (at int, note text)`, // pgbench_history-like: no key
		`CREATE ROLE cdc LOGIN`,
		`GRANT CREATE ON DATABASE postgres TO cdc`,
		`GRANT TRIGGER ON app, hist TO cdc`,
		`CREATE ROLE writer LOGIN`,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON app, hist TO writer`)
	ctx := testCtx(t)
	cdc := connect(t, c, "cdc")
	var super, repl bool
	require.NoError(t, cdc.QueryRow(ctx, `SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user`).Scan(&super, &repl))
	require.False(t, super || repl)
	tables := []trigger.Table{{Schema: "public", Name: "app"}, {Schema: "public", Name: "hist"}}
	require.NoError(t, trigger.Install(ctx, cdc, tables, trigger.Options{AllowKeyless: true}))
	require.NoError(t, trigger.Install(ctx, cdc, tables, trigger.Options{AllowKeyless: true}), "idempotent")
	countTriggers := func() (all, rowLevel int) {
		require.NoError(t, cdc.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE tgtype & 1 = 1) FROM pg_trigger WHERE tgname LIKE 'cdcd\_%'`).Scan(&all, &rowLevel))
		return all, rowLevel
	}
	all, rowLevel := countTriggers()
	require.Equal(t, []int{8, 0}, []int{all, rowLevel})
	// Switching the trigger kind without owning the tables.
	require.NoError(t, trigger.Install(ctx, cdc, tables, trigger.Options{AllowKeyless: true, RowTriggers: true}))
	all, rowLevel = countTriggers()
	require.Equal(t, []int{8, 6}, []int{all, rowLevel})
	require.NoError(t, trigger.Install(ctx, cdc, tables, trigger.Options{AllowKeyless: true}))
	all, rowLevel = countTriggers()
	require.Equal(t, []int{8, 0}, []int{all, rowLevel})
	pos, err := trigger.Start(ctx, cdc)
	require.NoError(t, err)

	writer := connect(t, c, "writer")
	for _, s := range []string{
		`INSERT INTO app VALUES (1, 'a'), (2, 'b')`,
		`INSERT INTO hist VALUES (1, 'x'), (1, 'x')`,
		`UPDATE app SET v = 'c' WHERE id = 1`,
		`DELETE FROM hist WHERE note = 'x'`,
	} {
		_, err := writer.Exec(ctx, s)
		require.NoError(t, err, s)
	}
	b, err := trigger.NewReader().Poll(ctx, cdc, pos)
	require.NoError(t, err)
	require.Len(t, b.Txs, 4)
	require.Equal(t, 7, b.Rows)
	del := b.Txs[3].Changes[0]
	require.Equal(t, change.OpDelete, del.Op)
	require.False(t, del.OldKeyOnly, "key-less tables carry whole old rows")
	require.Equal(t, "1 x", del.Old[0].String()+" "+del.Old[1].String())
	require.Empty(t, del.Relation.KeyColumns())
	n, err := trigger.Ack(ctx, cdc, b.Cur)
	require.NoError(t, err)
	require.EqualValues(t, 7, n)

	require.NoError(t, trigger.Uninstall(ctx, cdc))
	require.NoError(t, trigger.Uninstall(ctx, cdc), "idempotent")
	var objs int
	require.NoError(t, cdc.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'cdcd%')
		+ (SELECT count(*) FROM pg_namespace WHERE nspname = 'cdcd')`).Scan(&objs))
	require.Zero(t, objs)
	_, err = writer.Exec(ctx, `INSERT INTO app VALUES (3, 'c')`)
	require.NoError(t, err)
	_, err = trigger.Start(ctx, cdc)
	require.ErrorIs(t, err, trigger.ErrNotInstalled)
}

// TestExport: an initial copy made in the exported snapshot, plus the polls
// from its position, equals the source while writes run before, during
// and after the export.
func TestExport(t *testing.T) {
	c := pgtest.StartT(t, pgtest.Options{Name: "source"})
	c.ExecT(t, "postgres", acctDDL)
	ctx := testCtx(t)
	conn := connect(t, c, "")
	require.NoError(t, trigger.Install(ctx, conn, []trigger.Table{{Schema: "public", Name: "acct"}}, trigger.Options{}))
	c.ExecT(t, "postgres", `INSERT INTO acct SELECT g, g, 'before' FROM generate_series(1, 100) g`)

	// A transaction in progress when the snapshot is taken: not in the
	// copy, delivered by the polls.
	open := connect(t, c, "")
	otx, err := open.Begin(ctx)
	require.NoError(t, err)
	_, err = otx.Exec(ctx, `UPDATE acct SET note = 'in progress' WHERE id = 1`)
	require.NoError(t, err)

	exp, err := trigger.StartExport(ctx, connect(t, c, ""))
	require.NoError(t, err)
	c.ExecT(t, "postgres", `UPDATE acct SET v = v + 1000, note = 'after' WHERE id % 3 = 0`, `DELETE FROM acct WHERE id > 90`)
	require.NoError(t, otx.Commit(ctx))

	copier := connect(t, c, "")
	ctx2 := testCtx(t)
	ctxTx, err := copier.BeginTx(ctx2, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	require.NoError(t, err)
	_, err = ctxTx.Exec(ctx2, "SET TRANSACTION SNAPSHOT '"+exp.Name+"'")
	require.NoError(t, err)
	rows, err := ctxTx.Query(ctx2, `SELECT id::text, v::text, note FROM acct`)
	require.NoError(t, err)
	rep := replica{"public.acct": {}}
	for rows.Next() {
		var id, v, note string
		require.NoError(t, rows.Scan(&id, &v, &note))
		rep["public.acct"][id] = []string{id, v, note}
	}
	require.NoError(t, rows.Err())
	require.NoError(t, ctxTx.Rollback(ctx2))
	require.NoError(t, exp.Close(ctx))
	require.Len(t, rep["public.acct"], 100, "the copy has the rows committed before the export")
	require.Equal(t, "before", rep["public.acct"]["1"][2])

	c.ExecT(t, "postgres", `INSERT INTO acct VALUES (500, 5, 'later')`)
	b, err := trigger.NewReader().Poll(ctx, conn, exp.Position)
	require.NoError(t, err)
	for _, tx := range b.Txs {
		require.NoError(t, rep.apply(tx))
	}
	require.Equal(t, tableTexts(t, conn, "acct", 1), rep["public.acct"])
}
