package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
)

// benchConf tunes the throwaway servers for bulk work; every cluster of a
// comparison gets the same settings.
var benchConf = map[string]string{
	"max_wal_size":       "8GB",
	"checkpoint_timeout": "30min",
	"shared_buffers":     "256MB",
	// A subscription re-enabled soon after it stopped otherwise waits up
	// to 5 s (the default) for its worker: measure replication, not that.
	"wal_retrieve_retry_interval": "200ms",
}

// servers tracks clusters so a scenario stops all of them on return.
type servers []*pgtest.Cluster

func (s *servers) start(ctx context.Context, name string, conf map[string]string) (*pgtest.Cluster, error) {
	c, err := pgtest.Start(ctx, pgtest.Options{Name: name, Conf: conf})
	if err != nil {
		return nil, err
	}
	*s = append(*s, c)
	return c, nil
}

// stop has a pointer receiver: `defer srv.stop()` runs before any start,
// and a value receiver would see that empty slice (servers leaked their
// data directories in /tmp).
func (s *servers) stop() {
	for _, c := range *s {
		_ = c.Stop()
	}
}

// pgBin is a PostgreSQL 15 client tool (pg_recvlogical, pgbench, pg_dump, psql).
func pgBin(tool string) (string, error) {
	dir, err := pgtest.BinDir(pgtest.V15)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, tool), nil
}

// Proc is a running cdcd process.
type Proc struct {
	cmd  *exec.Cmd
	done chan error
	log  string
}

// startCdcd runs `cdcd <args>` with its log in the work directory.
func startCdcd(e *Env, name string, args ...string) (*Proc, error) {
	logPath := filepath.Join(e.Work, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(e.Bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if e.Profile != "" {
		e.profiles++
		prof := filepath.Join(e.Profile, fmt.Sprintf("%s-%d.pprof", name, e.profiles))
		cmd.Env = append(os.Environ(), "CDCD_CPUPROFILE="+prof)
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	p := &Proc{cmd: cmd, done: make(chan error, 1), log: logPath}
	go func() { p.done <- cmd.Wait(); lf.Close() }()
	return p, nil
}

// PeakRSS is the process's peak resident set size (VmHWM), in bytes.
func (p *Proc) PeakRSS() uint64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Exited reports whether the process ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	default:
		return false, nil
	}
}

// Wait waits for the process to exit by itself.
func (p *Proc) Wait(ctx context.Context, timeout time.Duration) error {
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			return fmt.Errorf("cdcd: %v; log tail:\n%s", err, tail(p.log, 20))
		}
		return nil
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		return fmt.Errorf("cdcd did not finish within %v; log tail:\n%s", timeout, tail(p.log, 20))
	case <-ctx.Done():
		_ = p.cmd.Process.Kill()
		return ctx.Err()
	}
}

// Stop sends SIGTERM and waits for a clean exit.
func (p *Proc) Stop() error {
	if done, _ := p.Exited(); !done {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			return fmt.Errorf("cdcd exited with %v; log tail:\n%s", err, tail(p.log, 20))
		}
		return nil
	case <-time.After(2 * time.Minute):
		_ = p.cmd.Process.Kill()
		return errors.New("cdcd did not stop within 2 minutes of SIGTERM")
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// pipelineConfig is a `cdcd run` configuration from src to a PostgreSQL target.
func pipelineConfig(e *Env, name string, src, dst *pgtest.Cluster, extra string) (string, error) {
	trailDir := filepath.Join(e.Work, name+"-trail")
	if err := os.RemoveAll(trailDir); err != nil {
		return "", err
	}
	y := fmt.Sprintf(`source:
  dsn: %q
  slot: cdcd
  publication: cdcd
  create: true
trail:
  dir: %q
sinks:
  - name: target
    kind: postgres
    dsn: %q
log:
  format: json
%s`, src.DSN("postgres"), trailDir, dst.DSN("postgres"), extra)
	path := filepath.Join(e.Work, name+".yaml")
	return path, os.WriteFile(path, []byte(y), 0o600)
}

// exec runs statements on database postgres.
func execSQL(ctx context.Context, c *pgtest.Cluster, sql ...string) error {
	return c.Exec(ctx, "postgres", sql...)
}

// markerLSN commits a logical decoding message and returns its LSN: a
// consumer that reached it has received everything committed before.
func markerLSN(c *pgtest.Cluster) (change.LSN, error) {
	var s string
	if err := c.QueryRow("SELECT pg_logical_emit_message(true, 'bench.end', 'end')::text", &s); err != nil {
		return 0, err
	}
	return change.ParseLSN(s)
}

// drainer commits marker rows on a source and waits for them on a target:
// once a marker is applied, everything committed before it is. It polls
// over one open connection: a new connection per poll would load the
// target's postmaster with forks and skew the measurement.
type drainer struct {
	n    int
	conn *pgx.Conn
	dst  *pgtest.Cluster
}

func (d *drainer) wait(ctx context.Context, src, dst *pgtest.Cluster, timeout time.Duration, alive func() error) error {
	if d.conn == nil || d.dst != dst {
		if d.conn != nil {
			d.conn.Close(ctx)
		}
		conn, err := pgx.Connect(ctx, dst.DSN("postgres"))
		if err != nil {
			return err
		}
		d.conn, d.dst = conn, dst
	}
	d.n++
	if err := execSQL(ctx, src, fmt.Sprintf(`INSERT INTO marker VALUES (%d)`, d.n)); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		var n int
		if err := d.conn.QueryRow(ctx, `SELECT count(*) FROM marker WHERE id = $1`, d.n).Scan(&n); err != nil {
			return err
		}
		if n == 1 {
			return nil
		}
		if alive != nil {
			if err := alive(); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("marker %d not applied within %v", d.n, timeout)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// alive turns an unexpected cdcd exit into an error.
func (p *Proc) alive() error {
	if done, err := p.Exited(); done {
		return fmt.Errorf("cdcd exited (%v); log tail:\n%s", err, tail(p.log, 20))
	}
	return nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted)-1) + 0.5)
	return sorted[i]
}

func secs(d time.Duration) float64 { return d.Seconds() }

func human(n int) string {
	switch {
	case n >= 1000000 && n%1000000 == 0:
		return fmt.Sprintf("%dM", n/1000000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return strconv.Itoa(n)
}
