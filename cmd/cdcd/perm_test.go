package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
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
	"github.com/cdcd-io/cdcd/pkg/snapshot"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// underUmask0 runs the cdcd binary with umask 0, so only the modes cdcd
// asks for explicitly decide who can read what it writes.
func underUmask0(bin string, args ...string) *exec.Cmd {
	return exec.Command("/bin/sh", append([]string{"-c", `umask 0 && exec "$0" "$@"`, bin}, args...)...)
}

// TestTrailFilesOwnerOnly runs the real binary under umask 0 into a fresh
// trail directory — `cdcd run` with an initial snapshot and streaming to a
// PostgreSQL sink, then `cdcd capture` repairing a torn tail — and checks
// that the directory is 0700 and every file in it (segments, .broken,
// capture.ack, the snapshot state) 0600.
func TestTrailFilesOwnerOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the cdcd binary and starts servers")
	}
	src := pgtest.StartT(t, pgtest.Options{Name: "source"})
	dst := pgtest.StartT(t, pgtest.Options{Name: "target"})
	schema := `CREATE TABLE items (id int PRIMARY KEY, note text)`
	src.ExecT(t, "postgres", schema, `INSERT INTO items SELECT g, 'snapshot ' || g FROM generate_series(1, 2000) g`)
	dst.ExecT(t, "postgres", schema)
	bin := pgtest.BuildCdcdT(t)
	dir := t.TempDir()
	trailDir := filepath.Join(dir, "trail")
	cfg := filepath.Join(dir, "cdcd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
source:
  dsn: %q
  create: true
  heartbeat: 1s
  status_interval: 200ms
trail:
  dir: %q
  segment_bytes: 64KiB
sinks:
  - name: target
    kind: postgres
    dsn: %q
    batch: { max_delay: 20ms }
snapshot: { mode: initial }
log:
  format: json
`, src.DSN("postgres"), trailDir, dst.DSN("postgres"))), 0o600))
	count := func() int {
		var n int
		_ = dst.QueryRow(`SELECT count(*) FROM items`, &n)
		return n
	}

	// cdcd run: the pipeline creates the trail directory, capture its
	// segments and capture.ack, the snapshot its state file.
	var logs bytes.Buffer
	run := underUmask0(bin, "run", "--config", cfg)
	run.Stdout, run.Stderr = &logs, &logs
	require.NoError(t, run.Start())
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = run.Process.Kill()
			<-exited
		}
	}()
	require.Eventually(t, func() bool { return count() == 2000 }, 2*time.Minute, 50*time.Millisecond, "snapshot copied")
	src.ExecT(t, "postgres", `INSERT INTO items SELECT g, 'stream ' || g FROM generate_series(2001, 6000) g`)
	require.Eventually(t, func() bool { return count() == 6000 }, 2*time.Minute, 50*time.Millisecond, "stream applied")
	// Idle, capture adopts the server's WAL end and stores it in
	// capture.ack first (DESIGN rule 3); DDL moves the WAL end on.
	src.ExecT(t, "postgres", `CREATE TABLE noise (x int)`)
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(trailDir, "capture.ack"))
		return err == nil
	}, 2*time.Minute, 50*time.Millisecond, "capture.ack stored")
	st, err := snapshot.LoadState(trailDir, "target")
	require.NoError(t, err)
	require.True(t, st != nil && st.Complete, "snapshot state stored")
	require.NoError(t, run.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		stopped = true
		require.NoError(t, err, "clean stop: %s", logs.String())
	case <-time.After(time.Minute):
		t.Fatalf("cdcd run did not stop on SIGTERM: %s", logs.String())
	}

	// A torn tail, repaired by `cdcd capture` into a .broken file.
	segs, err := trail.Segments(trailDir)
	require.NoError(t, err)
	require.Greater(t, len(segs), 1, "rolled over")
	f, err := os.OpenFile(segs[len(segs)-1].Path, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.Write([]byte("a torn write"))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	src.ExecT(t, "postgres", `INSERT INTO items VALUES (6001, 'after')`)
	m := src.MarkerT(t)
	out, err := underUmask0(bin, "capture", "--config", cfg, "--until", m.String()).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.FileExists(t, segs[len(segs)-1].Path+".broken")

	var names []string
	require.NoError(t, filepath.WalkDir(trailDir, func(path string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		info, err := os.Stat(path)
		require.NoError(t, err)
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		require.Equal(t, want, info.Mode().Perm(), "%s", path)
		names = append(names, d.Name())
		return nil
	}))
	all := strings.Join(names, " ")
	for _, want := range []string{"capture.ack", "snapshot-target.json", ".trail.broken"} {
		require.Contains(t, all, want)
	}
	t.Logf("checked %d entries: %s", len(names), all)
}

// TestTrailDumpRefusesCorruption: `cdcd trail dump` on a trail whose active
// segment is damaged in the middle, with committed transactions after the
// damage, exits non-zero naming the file and offset instead of printing the
// records before it and stopping quietly.
func TestTrailDumpRefusesCorruption(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the cdcd binary")
	}
	dir := t.TempDir()
	w, err := trail.Open(dir, trail.Options{SystemID: 42})
	require.NoError(t, err)
	rel := &change.Relation{OID: 7, Schema: "app", Name: "orders", ReplicaIdentity: 'd',
		Columns:    []change.Column{{Name: "id", TypeName: "int8", Key: true}, {Name: "note", TypeName: "text"}},
		PrimaryKey: []int{0}}
	for i := range 50 {
		tx := &change.Tx{XID: uint32(900 + i), EndLSN: change.LSN(0x1000 + i*0x100)}
		require.NoError(t, w.Begin(tx))
		require.NoError(t, w.Change(&change.Change{Op: change.OpInsert, Relation: rel, New: change.Row{change.Text(fmt.Sprint(i)), change.Text("hello")}}))
		require.NoError(t, w.Commit(tx))
		_, err = w.Sync()
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	segs, err := trail.Segments(dir)
	require.NoError(t, err)
	path := segs[len(segs)-1].Path

	// Find a frame in the middle (doc.go: a 48-byte header, then frames of
	// a 4-byte length, a 4-byte checksum and the payload padded to 8).
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var starts []int
	for off := 48; off < len(b); off += 8 + (int(binary.LittleEndian.Uint32(b[off:]))+7)&^7 {
		starts = append(starts, off)
	}
	victim := starts[len(starts)/2]
	for i := range 4 {
		b[victim+10+i] ^= 0xff
	}
	require.NoError(t, os.WriteFile(path, b, 0o600))

	bin := pgtest.BuildCdcdT(t)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "trail", "dump", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "stdout: %s", stdout.String())
	require.NotZero(t, exit.ExitCode())
	require.Contains(t, stderr.String(), path)
	require.Contains(t, stderr.String(), fmt.Sprintf("at offset %d", victim))
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, b, after, "dump changes nothing")
}
