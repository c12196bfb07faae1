package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// QueryRow runs one query on database postgres and scans its row.
func (c *Cluster) QueryRow(sql string, dst ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, sql).Scan(dst...)
}

// WaitSlotActiveT waits until a consumer streams from the replication slot.
func (c *Cluster) WaitSlotActiveT(t testing.TB, slot string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		// active alone is not enough: the creating session holds the slot
		// (active) while CREATE_REPLICATION_SLOT still waits to become
		// consistent — seconds on a standby, which needs a running-xacts
		// record from the primary — and what commits before the slot's
		// consistent point is not in its stream. confirmed_flush_lsn is
		// set once it is consistent.
		var active bool
		err := c.QueryRow(fmt.Sprintf("SELECT active AND confirmed_flush_lsn IS NOT NULL FROM pg_replication_slots WHERE slot_name = '%s'", slot), &active)
		if err == nil && active {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s not active after 60s: %v", slot, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MarkerT commits a logical message and returns its LSN: once a consumer is
// past it, everything committed before it has been delivered.
func (c *Cluster) MarkerT(t testing.TB) change.LSN {
	t.Helper()
	var s string
	if err := c.QueryRow("SELECT pg_logical_emit_message(true, 'test.marker', 'm')::text", &s); err != nil {
		t.Fatalf("pgtest: marker: %v", err)
	}
	l, err := change.ParseLSN(s)
	if err != nil {
		t.Fatalf("pgtest: marker: %v", err)
	}
	return l
}

// BuildCdcdT builds the cdcd binary once per test binary and returns its path.
func BuildCdcdT(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		sweepBins()
		d, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", binPrefix, os.Getpid()))
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(d, "cdcd")
		out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", builtBin, "github.com/cdcd-io/cdcd/cmd/cdcd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("pgtest: %v", buildErr)
	}
	return builtBin
}

// binPrefix names the directories of built binaries: the test process's
// pid follows it, so a later process can remove those of processes gone
// (a test binary has no hook at exit; each build is ~30 MB).
const binPrefix = "cdcd-bin-"

// sweepBins removes the binary directories of test processes that ended.
func sweepBins() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), binPrefix+"*"))
	for _, d := range dirs {
		pid, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(d), binPrefix), "-")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil || n <= 0 || syscall.Kill(n, 0) != syscall.ESRCH {
			continue // not ours, or its process still runs
		}
		_ = os.RemoveAll(d)
	}
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)
