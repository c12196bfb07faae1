package postgres

import (
	"context"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/dsqltest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// golden compares got with testdata/name, rewriting it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create it")
	require.Equal(t, string(want), got, "golden file %s (go test -update rewrites it)", path)
}

// TestCitusStatementsGolden: every statement the citus flavor sends names
// the whole key, so Citus routes it to the one shard of the key's
// distribution column.
func TestCitusStatementsGolden(t *testing.T) {
	t.Parallel()
	tbl := &table{
		target: target{"shop", "order_lines"},
		cols: []column{{`"tenant_id"`, "bigint"}, {`"id"`, "integer"}, {`"sku"`, "text"}, {`"qty"`, "numeric"},
			{`"Note"`, "character varying"}},
		keys:     []int{0, 1},
		conflict: `"tenant_id", "id"`,
	}
	allKey := &table{target: target{"shop", "tags"}, cols: []column{{`"tenant_id"`, "bigint"}, {`"tag"`, "text"}},
		keys: []int{0, 1}, conflict: `"tenant_id", "tag"`}
	var b strings.Builder
	for _, s := range []struct{ what, sql string }{
		{"delete", citusDeleteSQL(tbl)},
		{"upsert", citusUpsertSQL(tbl)},
		{"update qty", citusUpdateSQL(tbl, []int{3})},
		{"update sku, Note", citusUpdateSQL(tbl, []int{2, 4})},
		{"upsert, every column a key column", citusUpsertSQL(allKey)},
	} {
		b.WriteString("-- " + s.what + "\n" + s.sql + ";\n\n")
		// The distribution column (a key column, $1) is always fixed.
		if strings.HasPrefix(s.sql, "INSERT") {
			require.Contains(t, s.sql, "VALUES (CAST($1::text AS bigint)")
		} else {
			require.Contains(t, s.sql, `WHERE t."tenant_id" = CAST($1::text AS bigint)`)
		}
	}
	golden(t, "citus_statements.sql", b.String())
}

// TestCitusApplySemantics applies the same random stream to a plain-flavor
// and a citus-flavor sink on PostgreSQL: the tables must end identical,
// through inserts, updates with unchanged TOAST values, deletes, key
// changes and truncates, and the citus sink must only have used its
// single-key statements.
func TestCitusApplySemantics(t *testing.T) {
	t.Parallel()
	const ddl = `CREATE TABLE app.t (tenant int, id int, v text, n int, PRIMARY KEY (tenant, id))`
	// The citus sink writes to the statement-logging cluster, so the test
	// can read back what it sent.
	plainEnv, citusEnv := newEnv(t, "CREATE SCHEMA app", ddl), loggedEnv(t, false, "CREATE SCHEMA app", ddl)
	plain := plainEnv.sink("plain")
	citus, err := New(context.Background(), Config{Name: "citus", DSN: citusEnv.dsn, Flavor: FlavorCitus}, testLogger(t))
	require.NoError(t, err)
	defer citus.Close(context.Background())

	r := rel("app.t", "tenant pk", "id pk", "v", "n")
	rng := rand.New(rand.NewPCG(17, 4))
	present := map[[2]int]bool{}
	key := func() [2]int { return [2]int{rng.IntN(3), rng.IntN(40)} }
	str := strconv.Itoa
	for seq := uint64(1); seq <= 60; seq++ {
		var changes []*change.Change
		for range 1 + rng.IntN(60) {
			k := key()
			switch op := rng.IntN(10); {
			case !present[k] && op < 8:
				changes = append(changes, ins(r, str(k[0]), str(k[1]), "v"+str(rng.IntN(100)), str(rng.IntN(100))))
				present[k] = true
			case !present[k]:
				// nothing to do on an absent key
			case op < 3:
				changes = append(changes, upd(r, str(k[0]), str(k[1]), unch, str(rng.IntN(100))))
			case op < 5:
				changes = append(changes, upd(r, str(k[0]), str(k[1]), "w"+str(rng.IntN(100)), nil))
			case op < 7:
				changes = append(changes, del(r, str(k[0]), str(k[1])))
				delete(present, k)
			case op < 9:
				nk := key()
				if present[nk] {
					continue
				}
				changes = append(changes, updKey(r, []string{str(k[0]), str(k[1])}, str(nk[0]), str(nk[1]), "moved", str(rng.IntN(100))))
				delete(present, k)
				present[nk] = true
			default:
				if rng.IntN(8) == 0 {
					changes = append(changes, trunc(false, false, r))
					clear(present)
				}
			}
		}
		b := batch(seq, tx(changes...))
		require.NoError(t, plain.Apply(context.Background(), b))
		require.NoError(t, citus.Apply(context.Background(), b))
	}
	const q = "SELECT * FROM app.t ORDER BY tenant, id"
	want := plainEnv.rows(q)
	require.NotEmpty(t, want)
	require.Equal(t, want, citusEnv.rows(q))
	require.Equal(t, []string{"60"}, citusEnv.rows("SELECT seq FROM cdcd.checkpoint"))
	stmts, _, err := dsqltest.Violations(citusEnv.c, "cdcd sink citus")
	require.NoError(t, err)
	data := 0
	for _, st := range stmts {
		if !strings.Contains(st.SQL, `"app"."t"`) {
			continue
		}
		data++
		require.NotContains(t, st.SQL, "unnest(", "a set-based statement Citus cannot route")
		if !strings.HasPrefix(st.SQL, "TRUNCATE") {
			require.Contains(t, st.SQL, `CAST($1::text AS integer)`, st.SQL)
		}
	}
	require.Greater(t, data, 100)
}

// TestCitusKeyChangeWithUnchangedToast moves a row whose new image lacks a
// TOASTed value: the citus flavor updates it by its old key.
func TestCitusKeyChangeWithUnchangedToast(t *testing.T) {
	t.Parallel()
	e := newEnv(t, appDDL)
	s, err := New(context.Background(), Config{Name: "citus", DSN: e.dsn, Flavor: FlavorCitus}, testLogger(t))
	require.NoError(t, err)
	defer s.Close(context.Background())
	r := appRel()
	apply(t, s, 1, ins(r, "1", "big", "1"))
	require.NoError(t, s.Apply(context.Background(), batch(2, tx(updKey(r, []string{"1"}, "2", unch, "2")))))
	require.Equal(t, []string{"2|big|2"}, e.rows("SELECT * FROM app.t"))
}

func TestCitusPlacement(t *testing.T) {
	s := &Sink{cfg: Config{Citus: CitusConfig{
		Distribution: map[string]string{"s.orders": "tenant"},
		Reference:    []string{"s.countries"},
		ColocateWith: map[string]string{"s.orders": "s.customers", "s.lines": "s.orders"},
	}}}
	table := func(name string, rows int64) *schema.Table {
		sch, n, _ := strings.Cut(name, ".")
		return &schema.Table{Target: schema.Name{Schema: sch, Name: n}, Rows: rows}
	}
	for _, tc := range []struct {
		table string
		rows  int64
		want  schema.CitusPlacement
	}{
		{"s.orders", 5, schema.CitusPlacement{Column: "tenant", ColocateWith: "s.customers"}},
		{"s.countries", 1e9, schema.CitusPlacement{Reference: true}},
		{"s.small", 10000, schema.CitusPlacement{Reference: true}},
		{"s.big", 10001, schema.CitusPlacement{}},
		{"s.unknown", -1, schema.CitusPlacement{}}, // never analyzed: size unknown
		{"s.lines", 5, schema.CitusPlacement{ColocateWith: "s.orders"}},
	} {
		require.Equal(t, tc.want, s.citusPlacement(table(tc.table, tc.rows)), tc.table)
	}
	s.cfg.Citus.ReferenceMaxRows = -1
	require.Equal(t, schema.CitusPlacement{}, s.citusPlacement(table("s.small", 3)))
}
