package pipeline_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

func TestZZExperiment(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	rows := envInt("ZZ_ROWS", 200000)
	conf := map[string]string{"max_wal_size": "4GB", "checkpoint_timeout": "30min"}
	cs := pgtest.StartT(t, pgtest.Options{Name: "src", Conf: conf})
	ct := pgtest.StartT(t, pgtest.Options{Name: "dst", Conf: conf})
	ddl := `CREATE TABLE bench (id int PRIMARY KEY, a int, b text, c timestamptz, d numeric); CREATE TABLE marker (id int PRIMARY KEY)`
	cs.ExecT(t, "postgres", ddl)
	ct.ExecT(t, "postgres", ddl)
	r := startPipeline(t, yamlConfig(cs, nil, ct, t.TempDir()))
	waitSlot(t, cs)
	for _, stmt := range []string{fmt.Sprintf(`INSERT INTO bench SELECT g, g %% 1000, 'row ' || g, now(), g * 1.25 FROM generate_series(1, %d) g`, rows), `UPDATE bench SET a = a + 1`} {
		t0 := time.Now()
		cs.ExecT(t, "postgres", stmt)
		t1 := time.Now()
		m := cs.MarkerT(t)
		var firstRows, durable time.Duration
		base := r.p.Workers()[0].Stats().Rows
		for {
			st := r.p.Workers()[0].Stats()
			if firstRows == 0 && st.Rows > base {
				firstRows = time.Since(t1)
			}
			if durable == 0 && r.p.Capture().Stats().Durable > m {
				durable = time.Since(t1)
			}
			if st.Position.EndLSN > m {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Logf("rows %d: stmt %v; after commit: first rows applied %v, trail durable %v, all applied %v",
			rows, t1.Sub(t0), firstRows, durable, time.Since(t1))
	}
}
