package service_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/service"
)

func (r *running) do(t *testing.T, method, path string) (int, service.HoldState) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+r.svc.Addr()+path, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var st service.HoldState
	if resp.StatusCode == 200 {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	}
	return resp.StatusCode, st
}

func TestHoldEndpointHoldsASinkAtAPosition(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	schema := `CREATE TABLE items (id int PRIMARY KEY)`
	src.ExecT(t, "postgres", schema)
	dst.ExecT(t, "postgres", schema)
	r := start(t, yamlConfig(src, dst, t.TempDir(), ""))
	src.WaitSlotActiveT(t, "cdcd")
	src.ExecT(t, "postgres", `INSERT INTO items SELECT generate_series(1, 100)`)
	var at string
	require.NoError(t, src.QueryRow("SELECT pg_current_wal_lsn()::text", &at))
	boundary, err := change.ParseLSN(at)
	require.NoError(t, err)
	code, st := r.do(t, "POST", "/sinks/target/hold?lsn="+boundary.String()+"&ttl=1m")
	require.Equal(t, 200, code)
	require.Equal(t, boundary.String(), st.LSN)
	src.ExecT(t, "postgres", `INSERT INTO items SELECT generate_series(101, 200)`)
	r.waitFor(t, "the hold to be reached", 30*time.Second, func() bool {
		_, st = r.do(t, "GET", "/sinks/target/hold")
		return st.Reached
	})
	var n int
	require.NoError(t, dst.QueryRow("SELECT count(*) FROM items", &n))
	require.Equal(t, 100, n, "the target holds exactly what committed before the boundary")

	code, st = r.do(t, "DELETE", "/sinks/target/hold")
	require.Equal(t, 200, code)
	require.Empty(t, st.LSN)
	m := src.MarkerT(t)
	r.waitFor(t, "the sink to move on", 30*time.Second, func() bool {
		return r.svc.Pipeline().Workers()[0].Stats().Position.EndLSN > m
	})
	require.NoError(t, dst.QueryRow("SELECT count(*) FROM items", &n))
	require.Equal(t, 200, n)

	code, _ = r.do(t, "POST", "/sinks/nosuch/hold?lsn=0/1")
	require.Equal(t, 404, code)
	code, _ = r.do(t, "POST", "/sinks/target/hold?lsn=bad")
	require.Equal(t, 400, code)
	code, _ = r.do(t, "POST", "/sinks/target/hold?lsn=0/1&ttl=2h")
	require.Equal(t, 400, code)
}
