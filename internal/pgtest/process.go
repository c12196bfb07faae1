package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// postmaster is one run of the server process.
type postmaster struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has been reaped
	err    error         // exit status, valid once exited is closed
}

// start runs the postmaster and waits until it accepts connections.
func (c *Cluster) start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil {
		return errors.New("already running")
	}
	logf, err := os.OpenFile(c.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(filepath.Join(c.binDir, "postgres"), "-D", c.DataDir)
	if err := asServerUser(cmd, c.Dir); err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group, so that a Ctrl-C on the terminal reaches only the test
	// binary, which then stops the server in its cleanup. If the test binary dies,
	// SIGQUIT makes the postmaster do an immediate shutdown rather than linger.
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	p := &postmaster{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	c.proc = p
	if err := c.waitAccepting(ctx, p); err != nil {
		c.stopLocked(syscall.SIGQUIT)
		return err
	}
	return nil
}

// waitAccepting polls until the server accepts a connection, exits, or ctx ends.
func (c *Cluster) waitAccepting(ctx context.Context, p *postmaster) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(cctx, c.DSN("postgres"))
		cancel()
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-p.exited:
			return fmt.Errorf("postgres exited during startup: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("waiting for postgres to accept connections: %w (last error: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// stopLocked signals the postmaster and waits for it to exit, escalating to an
// immediate shutdown (SIGQUIT) and then to killing every server process.
func (c *Cluster) stopLocked(sig syscall.Signal) error {
	p := c.proc
	if p == nil {
		return nil
	}
	c.proc = nil
	pid := p.cmd.Process.Pid
	if sig != syscall.SIGKILL {
		for _, s := range []struct {
			sig     syscall.Signal
			timeout time.Duration
		}{{sig, stopTimeout}, {syscall.SIGQUIT, 10 * time.Second}} {
			_ = syscall.Kill(pid, s.sig) // ESRCH: already gone
			select {
			case <-p.exited:
				return nil
			case <-time.After(s.timeout):
			}
		}
	}
	if err := killAll(pid, p.exited); err != nil {
		return fmt.Errorf("pgtest: killing postgres (pid %d) of %q: %w", pid, c.Name, err)
	}
	return nil
}

// killAll SIGKILLs the postmaster pid and its children and waits until they have
// exited, so that a restarted server does not find the old shared memory still
// attached. The children cannot be reached by process group: each calls setsid.
// The postmaster is stopped first so that it cannot fork while we look.
func killAll(pid int, exited <-chan struct{}) error {
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	kids := childrenOf(pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
	deadline := time.After(10 * time.Second)
	select {
	case <-exited:
	case <-deadline:
		return errors.New("postmaster did not exit after SIGKILL")
	}
	for _, k := range kids {
		for alive(k) {
			select {
			case <-deadline:
				return fmt.Errorf("child %d did not exit after SIGKILL", k)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range entries {
		k, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, ok := procStat(k); ok && ppid == pid {
			kids = append(kids, k)
		}
	}
	return kids
}

// alive reports whether pid still runs; a zombie has already released its memory.
func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z" && state != "X"
}

// procStat returns the state and parent pid from /proc/<pid>/stat.
func procStat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, false
	}
	// "pid (comm) state ppid ...": comm may contain spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err == nil
}

// querier is the part of *pgx.Conn that poll's checks use.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// poll runs check on a connection to c every 10 ms until it reports done, ctx
// ends, or the server exits. Connection and query errors are retried: the server
// may not be ready yet.
func poll(ctx context.Context, c *Cluster, check func(querier) (bool, error)) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	var lastErr error
	for {
		if conn != nil && conn.IsClosed() {
			conn = nil
		}
		if conn == nil {
			conn, lastErr = c.connect(ctx, "postgres")
		}
		if conn != nil {
			var done bool
			done, lastErr = check(conn)
			if done {
				return nil
			}
		}
		c.mu.Lock()
		p := c.proc
		c.mu.Unlock()
		if p == nil {
			return errors.New("server not running")
		}
		select {
		case <-p.exited:
			return fmt.Errorf("server exited: %v", p.err)
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}
