package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// cpuUse is the CPU time (user + system) three parties spent during one
// timed run: the cdcd process, this harness process (kfake, when a
// scenario runs the broker in process, and the consumer that watches for
// the end), and the walsender PostgreSQL ran for the run's slot.
type cpuUse struct {
	cdcd, harness, walsender time.Duration
}

func (u cpuUse) String() string {
	return fmt.Sprintf("CPU cdcd %.2fs, harness %.2fs, walsender %.2fs",
		u.cdcd.Seconds(), u.harness.Seconds(), u.walsender.Seconds())
}

// cpuMeter measures a cpuUse: start it just before the cdcd process starts
// and call stop once that process has exited (and been waited for).
type cpuMeter struct {
	self, children syscall.Rusage
	prof           *os.File
	cancel         context.CancelFunc
	wal            chan time.Duration
}

// meterCPU starts measuring. With profile set it also writes a CPU profile
// of this process to that file until stop.
func meterCPU(pg *pgtest.Cluster, slot, profile string) (*cpuMeter, error) {
	m := &cpuMeter{wal: make(chan time.Duration, 1)}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		m.prof = f
	}
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &m.self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &m.children)
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() { m.wal <- walsenderCPU(ctx, pg, slot) }()
	return m, nil
}

func (m *cpuMeter) stop() cpuUse {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	if m.prof != nil {
		pprof.StopCPUProfile()
		m.prof.Close()
	}
	m.cancel()
	return cpuUse{
		cdcd:      rusageCPU(children) - rusageCPU(m.children),
		harness:   rusageCPU(self) - rusageCPU(m.self),
		walsender: <-m.wal,
	}
}

func rusageCPU(r syscall.Rusage) time.Duration {
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

// walsenderCPU follows the process serving the slot and returns the CPU
// time it had used when last seen (sampled every 50ms, so up to 50ms of
// its last work may be missed) once ctx ends.
func walsenderCPU(ctx context.Context, pg *pgtest.Cluster, slot string) time.Duration {
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		return 0
	}
	defer conn.Close(context.Background())
	var pid int32
	var last time.Duration
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if pid == 0 {
			var p *int32
			if conn.QueryRow(ctx, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&p) == nil && p != nil {
				pid = *p
			}
		}
		if pid != 0 {
			if t, ok := procCPU(int(pid)); ok {
				last = t
			}
		}
		select {
		case <-ctx.Done():
			return last
		case <-tick.C:
		}
	}
}

// procCPU is a process's utime + stime from /proc.
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	// Fields after the name start at state (3rd field of the line):
	// utime and stime are the 14th and 15th, in clock ticks (100 Hz).
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, true
}
