package oracle

// The live suite runs against a real Oracle when CDCD_TEST_ORACLE_DSN is
// set (a godror connection string, see README "Oracle sink"); otherwise
// TestMain prints one line saying it did not run, and these tests return
// before doing anything.

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/internal/typezoo"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/schema"
)

// live returns the live DSN, or "" when the suite is not to run.
func live(t *testing.T) string {
	t.Helper()
	d := os.Getenv(liveDSNEnv)
	if d == "" {
		t.Log("live suite not run: " + liveDSNEnv + " unset")
	}
	return d
}

// liveDB opens a plain session for setup and checks.
func liveDB(t *testing.T, d string) *sql.DB {
	t.Helper()
	db, err := sql.Open("godror", d)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	require.NoError(t, db.Ping())
	return db
}

// dropTable drops a table if it exists.
func dropTable(t *testing.T, db *sql.DB, name string) {
	t.Helper()
	_, err := db.Exec(`DROP TABLE "` + name + `" PURGE`)
	if err != nil && oraCode(err) != 942 {
		require.NoError(t, err)
	}
}

func liveSink(t *testing.T, d, name string) *Sink {
	t.Helper()
	s, err := New(context.Background(), Config{Name: name, DSN: d}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// accountsRel is a pgbench-like table.
func accountsRel() *change.Relation {
	return &change.Relation{Schema: "public", Name: "cdcd_live_accounts", Columns: []change.Column{
		{Name: "aid", TypeOID: oidInt8}, {Name: "bid", TypeOID: oidInt4}, {Name: "abalance", TypeOID: oidInt4},
		{Name: "filler", TypeOID: 25}}, PrimaryKey: []int{0}}
}

const accountsDDL = `CREATE TABLE "CDCD_LIVE_ACCOUNTS" ("AID" NUMBER(19) PRIMARY KEY, "BID" NUMBER(10), "ABALANCE" NUMBER(10), "FILLER" CLOB)`

// TestLiveWorkload runs a pgbench-like mix (balance updates, inserts,
// deletes, unchanged-TOAST updates, a replay) through Apply and compares
// Oracle with a model of what the source holds.
func TestLiveWorkload(t *testing.T) {
	d := live(t)
	if d == "" {
		return
	}
	ctx := context.Background()
	db := liveDB(t, d)
	dropTable(t, db, "CDCD_LIVE_ACCOUNTS")
	_, err := db.Exec(accountsDDL)
	require.NoError(t, err)
	_, _ = db.Exec(`DELETE FROM "CDCD_CHECKPOINT" WHERE "NAME" = 'live-workload'`)
	s := liveSink(t, d, "live-workload")
	rel := accountsRel()
	model := map[int64][3]string{}
	rng := rand.New(rand.NewPCG(1, 2))
	next := int64(1)
	for seq := uint64(1); seq <= 50; seq++ {
		var cs []*change.Change
		for range 400 {
			switch r := rng.IntN(10); {
			case r < 4 || len(model) == 0:
				id := next
				next++
				v := [3]string{strconv.Itoa(rng.IntN(10)), "0", strings.Repeat("f", rng.IntN(9000))} // some past the inline limit
				model[id] = v
				cs = append(cs, ins(rel, strconv.FormatInt(id, 10), v[0], v[1], v[2]))
			case r < 8:
				id := rng.Int64N(next-1) + 1
				v, ok := model[id]
				if !ok {
					continue
				}
				v[1] = strconv.Itoa(rng.IntN(2000) - 1000)
				model[id] = v
				cs = append(cs, upd(rel, strconv.FormatInt(id, 10), v[0], v[1], "<unchanged>"))
			default:
				id := rng.Int64N(next-1) + 1
				if _, ok := model[id]; !ok {
					continue
				}
				delete(model, id)
				cs = append(cs, del(rel, strconv.FormatInt(id, 10)))
			}
		}
		require.NoError(t, s.Apply(ctx, batch(seq, cs...)))
	}
	p, err := s.Position(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(50), p.Seq)

	rows, err := db.Query(`SELECT "AID", "BID", "ABALANCE", DBMS_LOB.GETLENGTH("FILLER") FROM "CDCD_LIVE_ACCOUNTS"`)
	require.NoError(t, err)
	defer rows.Close()
	got := 0
	for rows.Next() {
		var (
			aid, bid, bal int64
			n             sql.NullInt64
		)
		require.NoError(t, rows.Scan(&aid, &bid, &bal, &n))
		want, ok := model[aid]
		require.True(t, ok, "row %d should be gone", aid)
		require.Equal(t, want[0], strconv.FormatInt(bid, 10), "bid of %d", aid)
		require.Equal(t, want[1], strconv.FormatInt(bal, 10), "abalance of %d", aid)
		require.Equal(t, int64(len(want[2])), n.Int64, "filler of %d ('' is NULL: length 0)", aid)
		got++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, len(model), got)
}

// TestLiveTypeZoo creates the zoo table on Oracle from the source catalog
// (schema.create), applies the zoo's rows with the values Oracle cannot
// hold replaced by NULL (they are errors, checked in zoo_binds.golden),
// then an unchanged-TOAST update, and reads back what must be exact.
func TestLiveTypeZoo(t *testing.T) {
	d := live(t)
	if d == "" {
		return
	}
	ctx := context.Background()
	c := pgtest.StartT(t, pgtest.Options{Name: "oraclelivezoo"})
	c.ExecT(t, "postgres", typezoo.DDL)
	c.ExecT(t, "postgres", typezoo.Rows...)
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	require.NoError(t, err)
	defer conn.Close(ctx)
	var oid uint32
	require.NoError(t, conn.QueryRow(ctx, "SELECT 'zoo'::regclass::oid").Scan(&oid))
	tbl, err := schema.Read(ctx, conn, oid)
	require.NoError(t, err)
	tbl.Columns[tbl.Column(`Mixed Case "col"`)].Name = "Mixed Case col"

	db := liveDB(t, d)
	dropTable(t, db, "ZOO")
	s := liveSink(t, d, "live-zoo")
	created, err := s.EnsureTables(ctx, []*schema.Table{tbl}, true, false)
	require.NoError(t, err)
	require.Equal(t, []string{"public.zoo"}, created)

	rel := relationOf(tbl)
	cols, err := s.targetColumns(ctx, s.conn, "ZOO")
	require.NoError(t, err)
	tt, err := newTable(s.cfg, `"ZOO"`, rel, cols)
	require.NoError(t, err)
	res := conn.PgConn().ExecParams(ctx, "SELECT * FROM zoo ORDER BY id", nil, nil, nil, nil).Read()
	require.NoError(t, res.Err)
	var cs []*change.Change
	for _, vals := range res.Rows {
		r := make(change.Row, len(vals))
		for i, v := range vals {
			r[i] = change.Null
			if v == nil {
				continue
			}
			r[i] = change.Value{Kind: change.ValueText, Data: v}
			if err := tt.binders[i].add(newColArray(tt.binders[i].kind, false, 1), r[i], s.types, false); err != nil {
				r[i] = change.Null // a value Oracle cannot hold: refused by design
			}
		}
		cs = append(cs, &change.Change{Op: change.OpInsert, Relation: rel, New: r})
	}
	require.NoError(t, s.Apply(ctx, batch(1, cs...)))
	// Update row 4 with its big TOASTed value unchanged: BIG stays.
	u := make(change.Row, len(rel.Columns))
	copy(u, cs[3].New)
	u[len(u)-1] = change.Unchanged
	u[1] = change.Text("toast updated")
	require.NoError(t, s.Apply(ctx, batch(2, &change.Change{Op: change.OpUpdate, Relation: rel, New: u})))

	var (
		kind                  string
		bigLen, byLen         int64
		numf, ts, tstz, i8, n string
	)
	require.NoError(t, db.QueryRow(`SELECT "KIND", DBMS_LOB.GETLENGTH("BIG"), DBMS_LOB.GETLENGTH("BY"), "NUMF",
		TO_CHAR("TS", 'YYYY-MM-DD HH24:MI:SS.FF6'), TO_CHAR("TSTZ" AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.FF6'), TO_CHAR("I8"), TO_CHAR("R")
		FROM "ZOO" WHERE "ID" = 4`).Scan(&kind, &bigLen, &byLen, &numf, &ts, &tstz, &i8, &n))
	require.Equal(t, "toast updated", kind)
	require.Equal(t, int64(len(cs[3].New[len(u)-1].Data)), bigLen)
	require.Equal(t, int64(144000), byLen)
	require.Equal(t, "123456789012345678901234567890.0123456789", numf)
	require.Equal(t, "2024-02-29 13:14:15.123456", ts)
	require.Equal(t, "2024-02-29 11:14:15.123456", tstz)
	require.Equal(t, "9223372036854775807", i8)
	var cnt int
	require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM "ZOO"`).Scan(&cnt))
	require.Equal(t, 4, cnt)
}

// TestLiveKill9 applies batches in a child process, kills it with SIGKILL
// mid-stream, and checks that Oracle holds exactly the rows of the batches
// up to the stored position: none lost, none doubled.
func TestLiveKill9(t *testing.T) {
	d := live(t)
	if d == "" {
		return
	}
	if os.Getenv("CDCD_ORACLE_KILL_CHILD") == "1" {
		killChild(t, d)
		return
	}
	db := liveDB(t, d)
	dropTable(t, db, "CDCD_LIVE_ACCOUNTS")
	_, err := db.Exec(accountsDDL)
	require.NoError(t, err)
	_, _ = db.Exec(`DELETE FROM "CDCD_CHECKPOINT" WHERE "NAME" = 'live-kill'`)

	cmd := exec.Command(os.Args[0], "-test.run", "^TestLiveKill9$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CDCD_ORACLE_KILL_CHILD=1")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	// Wait for 20 committed batches, then kill at once, mid-batch.
	sc := bufio.NewScanner(out)
	for n := 0; n < 20 && sc.Scan(); {
		if strings.HasPrefix(sc.Text(), "committed ") {
			n++
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	s := liveSink(t, d, "live-kill")
	p, err := s.Position(context.Background())
	require.NoError(t, err)
	require.GreaterOrEqual(t, p.Seq, uint64(20))
	var cnt, maxID int64
	require.NoError(t, db.QueryRow(`SELECT COUNT(*), NVL(MAX("AID"), 0) FROM "CDCD_LIVE_ACCOUNTS"`).Scan(&cnt, &maxID))
	require.Equal(t, int64(p.Seq)*100, cnt, "rows of batches 1..%d", p.Seq)
	require.Equal(t, int64(p.Seq)*100, maxID)
}

// killChild applies 100-row batches forever, printing each commit.
func killChild(t *testing.T, d string) {
	s := liveSink(t, d, "live-kill")
	rel := accountsRel()
	for seq := uint64(1); ; seq++ {
		cs := make([]*change.Change, 100)
		for i := range cs {
			id := strconv.FormatUint((seq-1)*100+uint64(i)+1, 10)
			cs[i] = ins(rel, id, "1", "0", "filler")
		}
		if err := s.Apply(context.Background(), batch(seq, cs...)); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("committed", seq)
		if seq > 100000 {
			os.Exit(2)
		}
	}
}
