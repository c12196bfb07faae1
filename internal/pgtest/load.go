package pgtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Load is pgbench TPC-B plus an insert into orders(note) (a table with a
// sequence), run against a DSN — typically a Proxy — and restarted
// whenever it exits: a stand-in for an application that retries its
// failed connections. Every transaction opens its own connection (-C), so
// a flipped proxy takes the next one.
type Load struct {
	cancel    context.CancelFunc
	done      chan struct{}
	processed atomic.Int64
}

var processedRE = regexp.MustCompile(`number of transactions actually processed: (\d+)`)

// StartLoad starts the load with clients connections; scriptDir holds its
// script file.
func StartLoad(dsn string, clients int, scriptDir string) (*Load, error) {
	bin, err := BinDir(V15)
	if err != nil {
		return nil, err
	}
	script := filepath.Join(scriptDir, "orders.sql")
	if err := os.WriteFile(script, []byte("INSERT INTO orders (note) VALUES ('o');\n"), 0o644); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for ctx.Err() == nil {
			out, _ := exec.CommandContext(ctx, filepath.Join(bin, "pgbench"), "-n", "-C", "-c", strconv.Itoa(clients), "-T", "3600",
				"-b", "tpcb-like", "-f", script, dsn).CombinedOutput()
			if m := processedRE.FindSubmatch(out); m != nil {
				n, _ := strconv.ParseInt(string(m[1]), 10, 64)
				l.processed.Add(n)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond): // an application's reconnect delay
			}
		}
	}()
	return l, nil
}

// StartLoadT is StartLoad for tests; the load stops when the test ends.
func StartLoadT(t testing.TB, dsn string, clients int) *Load {
	t.Helper()
	l, err := StartLoad(dsn, clients, t.TempDir())
	if err != nil {
		t.Fatalf("pgtest: load: %v", err)
	}
	t.Cleanup(l.Stop)
	return l
}

// Stop ends the load. pgbench is killed, so its last run's summary is lost:
// Processed is a lower bound of the transactions committed.
func (l *Load) Stop() {
	l.cancel()
	<-l.done
}

// Processed is the number of transactions pgbench reported committed.
func (l *Load) Processed() int64 { return l.processed.Load() }
