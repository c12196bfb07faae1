package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

const appDDL = `CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, v text, n int)`

func appRel() *change.Relation { return rel("app.t", "id pk", "v", "n") }

func TestInsertUpdateDeleteTruncate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	s := e.sink("basic")
	r := appRel()
	apply(t, s, 1, ins(r, "1", "a", "10"), ins(r, "2", "b", nil), ins(r, "3", "", "30"))
	require.Equal(t, []string{"1|a|10", "2|b|<null>", "3||30"}, e.rows("SELECT * FROM app.t ORDER BY id"))

	apply(t, s, 2, upd(r, "2", "B", "20"), del(r, "3"), heartbeat())
	require.Equal(t, []string{"1|a|10", "2|B|20"}, e.rows("SELECT * FROM app.t ORDER BY id"))

	apply(t, s, 3, trunc(false, false, r))
	require.Empty(t, e.rows("SELECT * FROM app.t"))

	p, err := s.Position(context.Background())
	require.NoError(t, err)
	require.Equal(t, pos(3), p)
}

func TestKeyChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	s := e.sink("keychange")
	r := appRel()
	apply(t, s, 1, ins(r, "1", "a", "1"), ins(r, "2", "b", "2"))
	apply(t, s, 2, updKey(r, []string{"2"}, "100", "b", "2"))
	require.Equal(t, []string{"1|a|1", "100|b|2"}, e.rows("SELECT * FROM app.t ORDER BY id"))
	// Within one batch: insert, move twice, update.
	apply(t, s, 3, ins(r, "5", "e", "5"), updKey(r, []string{"5"}, "6", "e", "6"), updKey(r, []string{"6"}, "7", "e", "7"), upd(r, "7", "E", "7"))
	require.Equal(t, []string{"1|a|1", "7|E|7", "100|b|2"}, e.rows("SELECT * FROM app.t ORDER BY id"))
}

func TestDeleteJustInserted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	s := e.sink("x")
	r := appRel()
	apply(t, s, 1, ins(r, "1", "a", "1"), ins(r, "2", "b", "2"), del(r, "1"))
	require.Equal(t, []string{"2|b|2"}, e.rows("SELECT * FROM app.t ORDER BY id"))
}

func TestInsertDeleteInsert(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	s := e.sink("x")
	r := appRel()
	apply(t, s, 1, ins(r, "1", "old", "0"))
	apply(t, s, 2, del(r, "1"), ins(r, "1", "a", "1"), del(r, "1"), ins(r, "1", "b", nil))
	require.Equal(t, []string{"1|b|<null>"}, e.rows("SELECT * FROM app.t ORDER BY id"))
	apply(t, s, 3, ins(r, "2", "a", "1"), del(r, "2"), ins(r, "2", "c", "3"), del(r, "2"))
	require.Equal(t, []string{"1|b|<null>"}, e.rows("SELECT * FROM app.t ORDER BY id"))
}

func TestManyUpdatesOneStatement(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	s := e.sink("x")
	r := appRel()
	apply(t, s, 1, ins(r, "1", "a", "0"), ins(r, "2", "b", "0"))

	var changes []*change.Change
	for i := 1; i <= 1000; i++ {
		changes = append(changes, upd(r, "1", "a"+strconv.Itoa(i), strconv.Itoa(i)))
		changes = append(changes, upd(r, "2", unch, strconv.Itoa(i))) // partial: v unchanged
	}
	before := s.statements
	apply(t, s, 2, changes...)
	require.Equal(t, 2, s.statements-before, "one upsert for key 1, one partial update for key 2")
	require.Equal(t, []string{"1|a1000|1000", "2|b|1000"}, e.rows("SELECT * FROM app.t ORDER BY id"))
}

func TestUpdateGroupsByColumnSet(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	s := e.sink("x")
	r := appRel()
	apply(t, s, 1, ins(r, "1", "a", "1"), ins(r, "2", "b", "2"), ins(r, "3", "c", "3"))
	before := s.statements
	apply(t, s, 2, upd(r, "1", unch, "10"), upd(r, "2", "B", unch), upd(r, "3", unch, "30"))
	require.Equal(t, 2, s.statements-before)
	require.Equal(t, []string{"1|a|10", "2|B|2", "3|c|30"}, e.rows("SELECT * FROM app.t ORDER BY id"))
}

func TestKeySwap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	s := e.sink("x")
	r := appRel()
	apply(t, s, 1, ins(r, "1", "a", "1"), ins(r, "2", "b", "2"))
	// a↔b through a temporary key, as immediate constraints make a source do it.
	apply(t, s, 2,
		updKey(r, []string{"1"}, "-1", "a", "1"),
		updKey(r, []string{"2"}, "1", "b", "2"),
		updKey(r, []string{"-1"}, "2", "a", "1"))
	require.Equal(t, []string{"1|b|2", "2|a|1"}, e.rows("SELECT * FROM app.t ORDER BY id"))
	// And back, in two transactions of one batch.
	apply(t, s, 3, updKey(r, []string{"1"}, "3", "b", "2"), updKey(r, []string{"2"}, "1", "a", "1"))
	require.Equal(t, []string{"1|a|1", "3|b|2"}, e.rows("SELECT * FROM app.t ORDER BY id"))
}

const docDDL = `CREATE SCHEMA app; CREATE TABLE app.doc (id int PRIMARY KEY, body text, n int);
ALTER TABLE app.doc ALTER body SET STORAGE EXTERNAL`

func docRel() *change.Relation { return rel("app.doc", "id pk", "body", "n") }

func bigText(seed string) string { return strings.Repeat(seed, 100*1024/len(seed)) }

const docQuery = "SELECT id, length(body), md5(body), n FROM app.doc ORDER BY id"

func docRow(id int, body string, n int) string {
	return fmt.Sprintf("%d|%d|%s|%d", id, len(body), md5hex(body), n)
}

func TestUnchangedToastAcrossBatches(t *testing.T) {
	t.Parallel()
	e := newEnv(t, docDDL)
	s := e.sink("x")
	r := docRel()
	body := bigText("0123456789abcdef")
	apply(t, s, 1, ins(r, "1", body, "1"))
	apply(t, s, 2, upd(r, "1", unch, "2"))
	require.Equal(t, []string{docRow(1, body, 2)}, e.rows(docQuery))
	// Unchanged value and a key change, without a full image in the batch:
	// only the target has the value.
	apply(t, s, 3, updKey(r, []string{"1"}, "5", unch, "3"), upd(r, "5", unch, "4"))
	require.Equal(t, []string{docRow(5, body, 4)}, e.rows(docQuery))
}

func TestUnchangedToastWithinBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, docDDL)
	s := e.sink("x")
	r := docRel()
	body := bigText("xyz")
	apply(t, s, 1,
		ins(r, "1", body, "1"), upd(r, "1", unch, "2"),
		ins(r, "2", body, "1"), updKey(r, []string{"2"}, "3", unch, "5"), upd(r, "3", unch, "6"))
	require.Equal(t, []string{docRow(1, body, 2), docRow(3, body, 6)}, e.rows(docQuery))
	// Partial updates of an existing row, then a full one, then partial.
	body2 := bigText("q")
	apply(t, s, 2, upd(r, "1", unch, "7"), upd(r, "1", body2, "8"), upd(r, "1", unch, "9"))
	require.Equal(t, []string{docRow(1, body2, 9), docRow(3, body, 6)}, e.rows(docQuery))
}

func TestReplicaIdentityFull(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	s := e.sink("x")
	r := appRel()
	r.ReplicaIdentity = 'f'
	for i := range r.Columns {
		r.Columns[i].Key = true // pgoutput flags every column under FULL
	}
	apply(t, s, 1, ins(r, "1", "a", "1"), ins(r, "2", "b", "2"))
	full := func(op change.Op, old, new change.Row) *change.Change {
		return &change.Change{Op: op, Relation: r, Old: old, New: new}
	}
	apply(t, s, 2,
		full(change.OpUpdate, row("1", "a", "1"), row("1", "A", "1")),
		full(change.OpUpdate, row("2", "b", "2"), row("20", unch, "22")), // key change, value from the old row
		full(change.OpDelete, row("1", "A", "1"), nil))
	require.Equal(t, []string{"20|b|22"}, e.rows("SELECT * FROM app.t ORDER BY id"))
}

func TestTruncateMidBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `CREATE SCHEMA app;
CREATE TABLE app.a (id int PRIMARY KEY, v text, s bigserial);
CREATE TABLE app.b (id int PRIMARY KEY, v text)`)
	s := e.sink("x")
	a, b := rel("app.a", "id pk", "v"), rel("app.b", "id pk", "v")
	apply(t, s, 1, ins(a, "1", "old"), ins(b, "1", "old"))
	apply(t, s, 2,
		ins(a, "2", "before"), ins(b, "2", "before"), upd(a, "1", "updated"),
		trunc(false, true, a, b),
		ins(a, "2", "after"), ins(b, "3", "after"), upd(a, "2", "after2"))
	require.Equal(t, []string{"2|after2|1"}, e.rows("SELECT * FROM app.a ORDER BY id"), "identity restarted")
	require.Equal(t, []string{"3|after"}, e.rows("SELECT * FROM app.b ORDER BY id"))
}

func TestNoKeyTable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `CREATE TABLE public.h (a int, b text)`)
	s := e.sink("x")
	h := rel("public.h", "a", "b")
	h.ReplicaIdentity = 'd'
	apply(t, s, 1, ins(h, "1", "x"), ins(h, "1", "x"), ins(h, "2", nil))
	require.Equal(t, []string{"1|x", "1|x", "2|<null>"}, e.rows("SELECT * FROM public.h ORDER BY a"))

	err := s.Apply(context.Background(), batch(2, tx(ins(h, "3", "y"), upd(h, "1", "z"))))
	require.ErrorContains(t, err, "table public.h has no primary key or replica identity: cdcd cannot apply updates/deletes to it; add a primary key")
	require.False(t, sink.IsRetriable(err))
	require.Len(t, e.rows("SELECT * FROM public.h"), 3)
}

func TestMissingTargetTable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	s := e.sink("aurora")
	r := appRel()
	apply(t, s, 1, ins(r, "1", "a", "1"))
	o := rel("app.orders", "id pk", "v")
	err := s.Apply(context.Background(), batch(2, tx(ins(r, "2", "b", "2"), ins(o, "1", "x"))))
	require.ErrorContains(t, err, `target table app.orders does not exist on sink "aurora": create it first, or set schema.create: true`)
	require.False(t, sink.IsRetriable(err))
	require.Equal(t, []string{"1|a|1"}, e.rows("SELECT * FROM app.t ORDER BY id"), "batch rolled back")

	// Once the table exists, the same batch applies on the same sink.
	e.exec("CREATE TABLE app.orders (id int PRIMARY KEY, v text)")
	require.NoError(t, s.Apply(context.Background(), batch(2, tx(ins(r, "2", "b", "2"), ins(o, "1", "x")))))
	require.Equal(t, []string{"1|x"}, e.rows("SELECT * FROM app.orders"))
}

func TestMissingTargetColumn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	s := e.sink("aurora")
	r := rel("app.t", "id pk", "v", "n", "extra")
	err := s.Apply(context.Background(), batch(1, tx(ins(r, "1", "a", "1", "e"))))
	require.ErrorContains(t, err, `target table app.t on sink "aurora" has no column extra`)
	require.False(t, sink.IsRetriable(err))
}

func TestMissingTargetKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `CREATE SCHEMA app; CREATE TABLE app.t (id int, v text, n int)`)
	s := e.sink("aurora")
	err := s.Apply(context.Background(), batch(1, tx(ins(appRel(), "1", "a", "1"))))
	require.ErrorContains(t, err, `target table app.t on sink "aurora" has no primary key or unique index on (id)`)
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	const password = "s3cret-Pa55"
	c := pgtest.StartT(t, pgtest.Options{Name: "sinkpw", Password: password})
	ctx := context.Background()

	good, err := New(ctx, Config{Name: "pw", DSN: c.DSN("postgres")}, testLogger(t))
	require.NoError(t, err)
	require.NoError(t, good.Close(ctx))

	for _, wrong := range []string{
		fmt.Sprintf("postgres://postgres:wrong-%s@127.0.0.1:%d/postgres?sslmode=disable", password, c.Port),
		fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres user=postgres password=wrong-%s sslmode=disable", c.Port, password),
	} {
		_, err = New(ctx, Config{Name: "pw", DSN: wrong}, testLogger(t))
		require.Error(t, err)
		t.Log(err)
		require.NotContains(t, err.Error(), password)
		require.Contains(t, err.Error(), "password authentication failed")
		require.Contains(t, err.Error(), fmt.Sprintf("127.0.0.1:%d/postgres user=postgres", c.Port))
		require.False(t, sink.IsRetriable(err), "a wrong password is not cured by retrying")
	}
}

func TestUnreachableTarget(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	_, err = New(context.Background(), Config{Name: "gone", DSN: fmt.Sprintf("postgres://u:pw@127.0.0.1:%d/db?sslmode=disable&connect_timeout=2", port)}, nil)
	require.Error(t, err)
	require.True(t, sink.IsRetriable(err), "%v", err)
	require.NotContains(t, err.Error(), ":pw")
}

func TestConnectionKilledIsRetriable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	s := e.sink("killed")
	r := appRel()
	apply(t, s, 1, ins(r, "1", "a", "1"))
	e.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cdcd sink killed'")
	err := s.Apply(context.Background(), batch(2, tx(ins(r, "2", "b", "2"))))
	require.Error(t, err)
	require.True(t, sink.IsRetriable(err), "%v", err)
	err = s.Apply(context.Background(), batch(2, tx(ins(r, "2", "b", "2"))))
	require.True(t, sink.IsRetriable(err), "%v", err)
	s = e.sink("killed")
	p, err := s.Position(context.Background())
	require.NoError(t, err)
	require.Equal(t, pos(1), p)
}

func TestPartialBatches(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	s := e.sink("partial")
	r := appRel()
	ctx := context.Background()
	apply(t, s, 1, ins(r, "1", "a", "1"))

	chunk := func(partial bool, changes ...*change.Change) *sink.Batch {
		b := batch(1, tx(changes...))
		b.Partial = partial
		if !partial {
			b.Position = pos(9)
		}
		return b
	}
	require.NoError(t, s.Apply(ctx, chunk(true, ins(r, "2", "b", "2"), upd(r, "1", "A", "1"))))
	require.Equal(t, []string{"1|a|1"}, e.rows("SELECT * FROM app.t ORDER BY id"))
	require.NoError(t, s.Apply(ctx, chunk(true, ins(r, "3", "c", "3"), del(r, "2"))))
	require.Equal(t, []string{"1|a|1"}, e.rows("SELECT * FROM app.t ORDER BY id"))
	require.Equal(t, []string{"1"}, e.rows("SELECT seq FROM cdcd.checkpoint WHERE name = 'partial'"))
	require.NoError(t, s.Apply(ctx, chunk(false, upd(r, "3", "C", "3"))))
	require.Equal(t, []string{"1|A|1", "3|C|3"}, e.rows("SELECT * FROM app.t ORDER BY id"))
	p, err := s.Position(ctx)
	require.NoError(t, err)
	require.Equal(t, pos(9), p)
}

func TestErrorMidPartialRollsBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL+"; CREATE TABLE app.nn (id int PRIMARY KEY, v text NOT NULL)")
	s := e.sink("partial")
	r, nn := appRel(), rel("app.nn", "id pk", "v")
	ctx := context.Background()
	apply(t, s, 1, ins(r, "1", "a", "1"))

	b := batch(1, tx(ins(r, "2", "b", "2"), upd(r, "1", "A", "1")))
	b.Partial = true
	require.NoError(t, s.Apply(ctx, b))
	b = batch(1, tx(ins(r, "3", "c", "3"), ins(nn, "1", nil))) // NOT NULL violation
	b.Partial = true
	err := s.Apply(ctx, b)
	require.ErrorContains(t, err, "23502")
	require.False(t, sink.IsRetriable(err))

	require.Equal(t, []string{"1|a|1"}, e.rows("SELECT * FROM app.t ORDER BY id"))
	p, err := s.Position(ctx)
	require.NoError(t, err)
	require.Equal(t, pos(1), p)
	// The sink is usable again: the worker restarts the transaction from Position.
	apply(t, s, 2, ins(r, "2", "b", "2"))
	require.Equal(t, []string{"1|a|1", "2|b|2"}, e.rows("SELECT * FROM app.t ORDER BY id"))
}

func TestPositionRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	ctx := context.Background()
	for _, table := range []string{"", "ck", "other.ck"} {
		cfg := Config{Name: "rt", DSN: e.dsn, CheckpointTable: table}
		s, err := New(ctx, cfg, nil)
		require.NoError(t, err)
		p, err := s.Position(ctx)
		require.NoError(t, err)
		require.Zero(t, p)
		want := sink.Position{Seq: 1<<62 + 7, EndLSN: change.LSN(0xABCDEF01_23456789)}
		require.NoError(t, s.Apply(ctx, &sink.Batch{Txs: []sink.Tx{tx(heartbeat())}, Position: want}))
		require.NoError(t, s.Close(ctx))

		s, err = New(ctx, cfg, nil)
		require.NoError(t, err)
		p, err = s.Position(ctx)
		require.NoError(t, err)
		require.Equal(t, want, p)
		require.NoError(t, s.Close(ctx))
	}
	require.Equal(t, []string{"ABCDEF01/23456789"}, e.rows("SELECT end_lsn FROM other.ck"))
}

// TestCrashMidBatch cancels an Apply while it waits on its second table: the
// first table's rows must not be visible and the position must not move.
func TestCrashMidBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `CREATE SCHEMA app; CREATE TABLE app.a (id int PRIMARY KEY, v text); CREATE TABLE app.b (id int PRIMARY KEY, v text)`)
	s := e.sink("crash")
	a, b := rel("app.a", "id pk", "v"), rel("app.b", "id pk", "v")
	apply(t, s, 1, ins(a, "0", "committed"))

	var changes []*change.Change
	for i := 1; i <= 50000; i++ {
		changes = append(changes, ins(a, strconv.Itoa(i), "v"))
	}
	changes = append(changes, ins(b, "1", "v"))

	bg := context.Background()
	locker, err := pgx.Connect(bg, e.dsn)
	require.NoError(t, err)
	defer locker.Close(bg)
	lockTx, err := locker.Begin(bg)
	require.NoError(t, err)
	_, err = lockTx.Exec(bg, "LOCK TABLE app.b IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() { done <- s.Apply(ctx, batch(2, tx(changes...))) }()
	require.Eventually(t, func() bool {
		return len(e.rows("SELECT 1 FROM pg_stat_activity WHERE application_name = 'cdcd sink crash' AND wait_event_type = 'Lock'")) == 1
	}, 30*time.Second, 20*time.Millisecond)
	cancel()
	err = <-done
	require.Error(t, err)
	require.True(t, errors.Is(err, context.Canceled) || sink.IsRetriable(err), "%v", err)
	require.NoError(t, lockTx.Rollback(bg))

	require.Equal(t, []string{"1"}, e.rows("SELECT count(*) FROM app.a"))
	s2 := e.sink("crash")
	p, err := s2.Position(bg)
	require.NoError(t, err)
	require.Equal(t, pos(1), p)
}

func TestTypesAndCopy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `CREATE SCHEMA "My App";
CREATE TYPE "My App".mood AS ENUM ('sad', 'happy');
CREATE TABLE "My App"."Typed" (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	"Name" varchar(10), amount numeric(12,2), at timestamptz, doc jsonb, tags text[], m "My App".mood,
	flag boolean, raw bytea, bits bit(3), code char(3))`)
	r := rel("My App.Typed", "id pk", "Name", "amount", "at", "doc", "tags", "m", "flag", "raw", "bits", "code")
	vals := func(id string, name any) []any {
		return []any{id, name, "12345.67", "2024-01-02 03:04:05+00", `{"a": [1, "x\ty"]}`, `{a,"b c","d\"e"}`, "happy", "t", `\x00ff`, "101", "ab"}
	}
	for _, copyMin := range []int{0, 1} {
		t.Run(fmt.Sprintf("copyMinRows=%d", copyMin), func(t *testing.T) {
			e.exec(`TRUNCATE "My App"."Typed"`)
			s := e.sink("types")
			s.copyMinRows = copyMin
			apply(t, s, 1,
				ins(r, vals("1", "tab\there")...), ins(r, vals("2", "nl\nback\\")...), ins(r, vals("3", nil)...),
				ins(r, vals("4", `\N`)...), ins(r, vals("5", "")...))
			apply(t, s, 2, upd(r, vals("3", "three")...), upd(r, "4", unch, "1.5", unch, unch, nil, unch, unch, unch, unch, unch))
			require.Equal(t, []string{
				"1|tab\there|12345.67|2024-01-02 03:04:05+00|{\"a\": [1, \"x\\ty\"]}|{a,\"b c\",\"d\\\"e\"}|happy|t|\\x00ff|101|ab ",
				"2|nl\nback\\|12345.67",
				"3|three|12345.67",
				"4|\\N|1.50",
				"5||12345.67",
			}, []string{
				e.rows(`SELECT * FROM "My App"."Typed" WHERE id = 1`)[0],
				e.rows(`SELECT id, "Name", amount FROM "My App"."Typed" WHERE id = 2`)[0],
				e.rows(`SELECT id, "Name", amount FROM "My App"."Typed" WHERE id = 3`)[0],
				e.rows(`SELECT id, "Name", amount FROM "My App"."Typed" WHERE id = 4`)[0],
				e.rows(`SELECT id, "Name", amount FROM "My App"."Typed" WHERE id = 5`)[0],
			})
			require.Equal(t, []string{"<null>"}, e.rows(`SELECT tags FROM "My App"."Typed" WHERE id = 4`))
			// A value too long for varchar(10) errs rather than being truncated.
			err := s.Apply(context.Background(), batch(3, tx(ins(r, vals("6", "01234567890")...))))
			require.ErrorContains(t, err, "22001")
		})
	}
}

func TestSchemaChangeMidBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	s := e.sink("x")
	v1 := rel("app.t", "id pk", "v")
	v2 := appRel()
	apply(t, s, 1, ins(v1, "1", "a"), ins(v2, "2", "b", "2"), upd(v1, "2", "B"), ins(v2, "3", "c", "3"))
	require.Equal(t, []string{"1|a|<null>", "2|B|2", "3|c|3"}, e.rows("SELECT * FROM app.t ORDER BY id"))
}

func TestBinaryValueRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	s := e.sink("x")
	c := ins(appRel(), "1", change.Value{Kind: change.ValueBinary, Data: []byte{1}}, "1")
	err := s.Apply(context.Background(), batch(1, tx(c)))
	require.ErrorContains(t, err, "column v is a binary value")
	require.False(t, sink.IsRetriable(err))
}

func TestIAMToken(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	cfg, err := pgx.ParseConfig("postgres://iam_user@db.example.com:5432/app")
	require.NoError(t, err)
	tok, err := iamToken(context.Background(), "eu-west-1", cfg)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(tok, "db.example.com:5432?Action=connect&DBUser=iam_user&"), tok)
	require.Contains(t, tok, "X-Amz-Credential=AKIDEXAMPLE")

	// The trust-authenticated test server ignores the token: New works with IAM on.
	e := newEnv(t)
	s, err := New(context.Background(), Config{Name: "iam", DSN: e.dsn, IAM: IAMConfig{Region: "eu-west-1"}}, nil)
	require.NoError(t, err)
	require.NoError(t, s.Close(context.Background()))
}

func TestCopyStagingReuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL+"; CREATE TABLE app.u (id int PRIMARY KEY, v text, n int)")
	s := e.sink("stage")
	s.copyMinRows = 1
	r, u := appRel(), rel("app.u", "id pk", "v", "n")
	ctx := context.Background()
	part := func(changes ...*change.Change) *sink.Batch { b := batch(1, tx(changes...)); b.Partial = true; return b }
	// Two tables of the same width share a staging table, within one
	// transaction and across Partial batches.
	require.NoError(t, s.Apply(ctx, part(ins(r, "1", "a", "1"), ins(u, "1", "ua", "1"))))
	require.NoError(t, s.Apply(ctx, part(ins(r, "2", "b", "2"))))
	// A failure rolls back the transaction that created the staging table.
	require.Error(t, s.Apply(ctx, part(ins(rel("app.missing", "id pk"), "1"))))
	apply(t, s, 2, ins(r, "3", "c", "3"), ins(u, "3", "uc", "3"))
	apply(t, s, 3, ins(r, "4", "d", "4"))
	require.Equal(t, []string{"3|c|3", "4|d|4"}, e.rows("SELECT * FROM app.t ORDER BY id"))
	require.Equal(t, []string{"3|uc|3"}, e.rows("SELECT * FROM app.u ORDER BY id"))
}

// TestFreshInsertsOverExistingRows: large sets of fresh inserts go straight
// into the table with COPY; when the target already holds some of those
// rows (the stream applied over a newer copy), the batch fails retriably
// with nothing applied, and its retry upserts through the staging path.
func TestFreshInsertsOverExistingRows(t *testing.T) {
	e := newEnv(t, benchDDL)
	r := benchRel()
	name := "fresh-" + e.db
	open := func() *Sink {
		s, err := New(context.Background(), Config{Name: name, DSN: e.dsn}, testLogger(t))
		require.NoError(t, err)
		t.Cleanup(func() { s.Close(context.Background()) })
		s.copyMinRows = 100
		return s
	}
	s := open()
	apply(t, s, 1, benchBatchN(1, 500, func(id int) *change.Change { return benchInsert(r, id) })...)
	require.Equal(t, []string{"500"}, e.rows(`SELECT count(*) FROM app.bench`))
	require.True(t, fastCopyAllowed(s.fastKey()), "no conflict yet")

	// Rows 401..900: 401..500 are already there, with other values.
	e.exec(`UPDATE app.bench SET name = 'stale' WHERE id > 400`)
	b := batch(2, tx(benchBatchN(401, 500, func(id int) *change.Change { return benchInsert(r, id) })...))
	err := s.Apply(context.Background(), b)
	require.Error(t, err)
	require.True(t, sink.IsRetriable(err), "a conflict on the fast path is retried: %v", err)
	require.False(t, fastCopyAllowed(s.fastKey()))
	require.True(t, fastCopyAllowed(name+"\x00elsewhere"), "only this sink and target")
	require.Equal(t, []string{"500|100"}, e.rows(`SELECT count(*), count(*) FILTER (WHERE name = 'stale') FROM app.bench`), "nothing applied")

	s = open() // the worker reopens the sink and re-reads the batch
	pos, err := s.Position(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(1), pos.Seq)
	require.NoError(t, s.Apply(context.Background(), b))
	require.Equal(t, []string{"900|0"}, e.rows(`SELECT count(*), count(*) FILTER (WHERE name = 'stale') FROM app.bench`))
	fastCopyOff.Delete(s.fastKey())
}

// TestFullUpdatesOfMissingRows: full-row updates go through UPDATE by key;
// keys the target lacks (a target behind a newer copy, or repaired by hand)
// are still written, through the upsert that follows a short UPDATE.
func TestFullUpdatesOfMissingRows(t *testing.T) {
	for _, copyMin := range []int{0, 10} {
		t.Run(fmt.Sprintf("copyMinRows=%d", copyMin), func(t *testing.T) {
			e := newEnv(t, benchDDL)
			s := e.sink("upd")
			s.copyMinRows = copyMin
			r := benchRel()
			apply(t, s, 1, benchBatchN(1, 20, func(id int) *change.Change { return benchInsert(r, id) })...)
			e.exec(`DELETE FROM app.bench WHERE id > 15`)
			// Update 11..25: 11..15 exist, 16..20 were deleted, 21..25 never existed.
			apply(t, s, 2, benchBatchN(11, 15, func(id int) *change.Change {
				s := strconv.Itoa(id)
				return upd(r, s, "u"+s, "7", "2024-05-06 07:08:09.123456+00", s+".50")
			})...)
			require.Equal(t, []string{"25|15|10"}, e.rows(`SELECT count(*), count(*) FILTER (WHERE name LIKE 'u%' AND qty = 7), count(*) FILTER (WHERE name LIKE 'name-%') FROM app.bench`))
			require.Equal(t, []string{"25|u25|25.50"}, e.rows(`SELECT id, name, price FROM app.bench WHERE id = 25`))
			// All present: the UPDATE alone does it.
			apply(t, s, 3, benchBatchN(1, 25, func(id int) *change.Change {
				s := strconv.Itoa(id)
				return upd(r, s, "v"+s, "8", "2024-05-06 07:08:09.123456+00", s+".75")
			})...)
			require.Equal(t, []string{"25|25"}, e.rows(`SELECT count(*), count(*) FILTER (WHERE name LIKE 'v%' AND qty = 8) FROM app.bench`))
		})
	}
}
