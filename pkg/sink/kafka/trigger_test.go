package kafka_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/kafkatest"
	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

// triggerYAML is a cdcd config from pg (source.kind: trigger) to one
// exactly-once kafka sink.
func triggerYAML(pg *pgtest.Cluster, k *kafkatest.Cluster, trailDir string) string {
	return fmt.Sprintf(`
source:
  kind: trigger
  dsn: %q
  create: true
  poll_interval: 50ms
trail:
  dir: %q
  segment_bytes: 1MiB
  purge_interval: 1s
sinks:
  - name: events
    kind: kafka
    brokers: [%s]
    batch: { max_rows: 2000, max_delay: 50ms }
    compression: zstd
log:
  format: text
`, pg.DSN("postgres"), trailDir, strings.Join(k.Addrs(), ", "))
}

// triggerDrained reports whether capture has drained the change log into
// the sink: no committed row is left in cdcd.change_log (rows are deleted
// only after the trigger source's state file records their batch durable),
// and the sink's last committed checkpoint is the state file's base, the
// end of the last transaction capture wrote (format in
// pkg/source/trigger/doc.go).
func triggerDrained(t testing.TB, pg *pgtest.Cluster, k *kafkatest.Cluster, trailDir string) (bool, string) {
	var left int64
	if err := pg.QueryRow(`SELECT count(*) FROM cdcd.change_log`, &left); err != nil || left > 0 {
		return false, fmt.Sprintf("change log: %d rows (%v)", left, err)
	}
	b, err := os.ReadFile(filepath.Join(trailDir, trigger.StateFile))
	if err != nil {
		return false, err.Error()
	}
	var base change.LSN
	for s := bufio.NewScanner(strings.NewReader(string(b))); s.Scan(); {
		if v, ok := strings.CutPrefix(s.Text(), "base "); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			require.NoError(t, err)
			base = change.LSN(n)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs, err := k.ReadCommitted(ctx, "cdcd.checkpoints")
	if err != nil || len(recs) == 0 {
		return false, fmt.Sprintf("no checkpoint (%v)", err)
	}
	var cp struct {
		EndLSN string `json:"end_lsn"`
	}
	require.NoError(t, json.Unmarshal(recs[len(recs)-1].Value, &cp))
	got, err := change.ParseLSN(cp.EndLSN)
	require.NoError(t, err)
	return got == base, fmt.Sprintf("sink checkpoint %s, capture durable %s", got, base)
}

// TestTriggerExactlyOnceKill9: the Kafka sink works unchanged behind the
// trigger source. `cdcd run` with source.kind: trigger is SIGKILLed
// repeatedly while the workload commits; afterwards read_committed
// consumers — franz-go and kcat — see every numbered row exactly once and
// every account's values exactly once, in order per key (verify, as for
// the pgoutput source).
func TestTriggerExactlyOnceKill9(t *testing.T) {
	pg := pgtest.StartT(t, pgtest.Options{})
	k := kafkatest.Start(t, kafkatest.Options{})
	setupWorkload(t, pg)
	bin := buildCdcd(t)
	trailDir := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "cdcd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(triggerYAML(pg, k, trailDir)), 0o600))
	out, err := exec.Command(bin, "trigger", "install", "--config", cfg).CombinedOutput()
	require.NoError(t, err, "%s", out)
	logPath := filepath.Join(t.TempDir(), "cdcd.log")
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", cfg)
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = f, f
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	began := time.Now()
	w := startWorkload(t, pg) // the triggers record it from its first row
	const kills = 6
	for i := range kills {
		cmd := start()
		// Not a synchronisation: the kill lands at a random instant of
		// start-up, poll, produce or commit, which is the point of the test.
		time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		t.Logf("kill %d: %d rows committed so far", i+1, w.committed.Load())
	}
	total := w.finish(t)
	log0, _ := os.ReadFile(logPath)
	cmd := start()
	// The last instance may find nothing left to do: it must be up before
	// SIGTERM (a signal before main installs its handler kills the
	// process), which a new "capture streaming" line shows.
	require.Eventually(t, func() bool {
		log, _ := os.ReadFile(logPath)
		return strings.Count(string(log), "capture streaming") > strings.Count(string(log0), "capture streaming")
	}, 2*time.Minute, 50*time.Millisecond, "the last cdcd instance never started streaming")
	var state string
	for deadline := time.Now().Add(2 * time.Minute); ; {
		var ok bool
		if ok, state = triggerDrained(t, pg, k, trailDir); ok {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("sink did not catch up: %s; cdcd log:\n%s", state, log)
		}
		time.Sleep(200 * time.Millisecond) // poll interval
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "clean stop exits 0")
	verify(t, pg, k, total)
	t.Logf("%d kills; %d numbered rows; drained (%s) in %s", kills, total, state, time.Since(began).Round(time.Second))
}
