package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/status"
)

// outputs collects everything the commands print, for the password grep.
type outputs struct{ all bytes.Buffer }

func (o *outputs) add(what string, b []byte) {
	fmt.Fprintf(&o.all, "== %s\n%s\n", what, b)
}

// cdcd runs the binary to completion.
func (o *outputs) cdcd(t *testing.T, bin string, env []string, args ...string) (stdout string, err error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	o.add(strings.Join(args, " ")+" (stdout)", out.Bytes())
	o.add(strings.Join(args, " ")+" (stderr)", errb.Bytes())
	return out.String(), err
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func serviceConfig(src, dst *pgtest.Cluster, trailDir, listen, dstPassword string) string {
	return fmt.Sprintf(`
source:
  dsn: "postgres://postgres:${CDCD_TEST_PW}@127.0.0.1:%d/postgres?sslmode=disable"
  create: true
  heartbeat: 1s
  status_interval: 200ms
trail:
  dir: %q
sinks:
  - name: target
    kind: postgres
    dsn: "postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable"
    batch: { max_delay: 20ms }
http:
  listen: %s
wal_guard: { interval: 200ms }
log:
  level: debug
`, src.Port, trailDir, dstPassword, dst.Port, listen)
}

// TestServiceCommands runs the real binary against password-protected
// servers: `cdcd check` (text and --json, right and wrong), `cdcd run`,
// `cdcd status` while it runs (from its endpoint) and after it stopped
// (from the trail and the target's checkpoint table); then greps every
// output and log for the password.
func TestServiceCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the cdcd binary and starts servers")
	}
	pwb := make([]byte, 8)
	_, _ = rand.Read(pwb)
	pw := "pw" + hex.EncodeToString(pwb)
	src := pgtest.StartT(t, pgtest.Options{Name: "source", Password: pw})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target", Password: pw})
	schema := `CREATE TABLE items (id int PRIMARY KEY, note text)`
	src.ExecT(t, "postgres", schema)
	dst.ExecT(t, "postgres", schema)
	bin := pgtest.BuildCdcdT(t)
	dir := t.TempDir()
	listen := freeAddr(t)
	cfgPath := filepath.Join(dir, "cdcd.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(serviceConfig(src, dst, filepath.Join(dir, "trail"), listen, "${CDCD_TEST_PW}")), 0o600))
	badPath := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(badPath, []byte(serviceConfig(src, dst, filepath.Join(dir, "trail-bad"), listen, "not-the-password")), 0o600))
	env := []string{"CDCD_TEST_PW=" + pw}
	var o outputs

	// check: right, then a target with a wrong password.
	out, err := o.cdcd(t, bin, env, "check", "--config", cfgPath)
	require.NoError(t, err, out)
	require.Contains(t, out, "PASS  source.role")
	require.Regexp(t, `WARN +sink\.target\.tls +sink target \(127\.0\.0\.1\) connects with sslmode=disable`, out)
	require.Contains(t, out, "0 failed")
	out, err = o.cdcd(t, bin, env, "check", "--config", badPath, "--json")
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, 1, exit.ExitCode())
	var doc struct {
		OK      bool `json:"ok"`
		Results []struct{ Check, Status, Detail, Remedy string }
	}
	require.NoError(t, json.Unmarshal([]byte(out), &doc), out)
	require.False(t, doc.OK)
	for _, r := range doc.Results {
		if r.Check == "sink.target.connect" {
			require.Equal(t, "fail", r.Status)
			require.Contains(t, r.Detail, "password authentication failed")
		} else {
			require.NotEqual(t, "fail", r.Status, r.Check)
		}
	}

	// run with the wrong target password: one line, exit 1.
	_, err = o.cdcd(t, bin, env, "run", "--config", badPath)
	require.ErrorAs(t, err, &exit)

	// run for real.
	logPath := filepath.Join(dir, "cdcd.log")
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	run := exec.Command(bin, "run", "--config", cfgPath)
	run.Env = append(os.Environ(), env...)
	run.Stdout, run.Stderr = logf, logf
	require.NoError(t, run.Start())
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	defer func() {
		_ = run.Process.Kill()
		<-exited
	}()
	waitReady(t, "http://"+listen+"/readyz", exited, logPath)

	src.ExecT(t, "postgres", `INSERT INTO items SELECT g, 'n' FROM generate_series(1, 300) g`)
	m := src.MarkerT(t)
	// The daemon reads the slot when /status is asked (not only every
	// wal_guard interval), so the report that shows the sink past m also
	// shows the slot capture created before it became ready.
	var live status.Report
	passed := func() bool {
		out, err = o.cdcd(t, bin, env, "status", "--config", cfgPath)
		live = status.Report{}
		if err != nil || json.Unmarshal([]byte(out), &live) != nil || len(live.Sinks) == 0 {
			return false
		}
		pos, _ := change.ParseLSN(live.Sinks[0].Position)
		return pos > m
	}
	for deadline := time.Now().Add(30 * time.Second); !passed(); {
		require.True(t, time.Now().Before(deadline), "sink did not pass %s: %v\n%s", m, err, out)
		time.Sleep(100 * time.Millisecond) // poll interval
	}
	require.True(t, live.Running, out)
	require.True(t, live.Capture.Connected, out)
	require.NotEqual(t, "0/0", live.Capture.Position, out)
	require.Empty(t, live.Slot.Error, out)
	require.True(t, live.Slot.Exists, out)
	require.GreaterOrEqual(t, live.Sinks[0].Rows, uint64(300))
	require.GreaterOrEqual(t, live.Sinks[0].LagBytes, int64(0))
	out, err = o.cdcd(t, bin, env, "status", "--config", cfgPath, "--table")
	require.NoError(t, err)
	require.Contains(t, out, "cdcd is running")
	require.Contains(t, out, "sink target")

	// Stop cleanly; the source keeps writing.
	require.NoError(t, run.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		exited <- err
		require.NoError(t, err, "clean stop exits 0")
	case <-time.After(time.Minute):
		t.Fatal("cdcd did not stop on SIGTERM")
	}
	var ckSeq int64
	var ckLSN string
	require.NoError(t, dst.QueryRow(`SELECT seq, end_lsn::text FROM cdcd.checkpoint WHERE name = 'target'`, &ckSeq, &ckLSN))
	src.ExecT(t, "postgres", `INSERT INTO items SELECT g, 'after' FROM generate_series(1000, 1100) g`)

	var down status.Report
	out, err = o.cdcd(t, bin, env, "status", "--config", cfgPath, "--json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(out), &down), out)
	require.False(t, down.Running)
	require.Equal(t, ckLSN, down.Sinks[0].Position, "the target's checkpoint")
	require.Equal(t, uint64(ckSeq), down.Sinks[0].Seq)
	require.Equal(t, int64(0), down.Sinks[0].LagTransactions, "everything in the trail was applied")
	require.Greater(t, down.Sinks[0].LagBytes, int64(0), "the source moved on while cdcd was down")
	require.Greater(t, down.Capture.LagBytes, int64(0))
	require.True(t, down.Slot.Exists)
	require.False(t, down.Slot.Active)
	require.Greater(t, down.Trail.Segments, 0)
	out, err = o.cdcd(t, bin, env, "status", "--config", cfgPath, "--table")
	require.NoError(t, err)
	require.Contains(t, out, "cdcd is not running")
	t.Logf("status after the stop:\n%s", out)

	// The password appears nowhere: outputs, logs, status documents.
	logs, err := os.ReadFile(logPath)
	require.NoError(t, err)
	o.add("cdcd run log", logs)
	require.Contains(t, string(logs), `"msg":"connected to the source: ready"`, "JSON logs when not on a terminal")
	all := o.all.String()
	require.NotContains(t, all, pw, "the password leaked")
	require.Contains(t, all, "password authentication failed", "the wrong-password paths ran")
}

func waitReady(t *testing.T, url string, exited chan error, logPath string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case err := <-exited:
			exited <- err
			log, _ := os.ReadFile(logPath)
			t.Fatalf("cdcd exited early: %v\n%s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("not ready after 60s: %v\n%s", errors.Join(err), log)
		}
		time.Sleep(50 * time.Millisecond) // poll interval: readiness and an early exit are both watched
	}
}
