package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
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

// runMeter measures a cpuUse: start it just before the cdcd process starts
// and call stop once that process has exited (and been waited for).
type runMeter struct {
	self, children float64 // seconds, from rusage
	prof           *os.File
	cancel         context.CancelFunc
	wal            chan time.Duration
}

// meterCPU starts measuring. With profile set it also writes a CPU profile
// of this process to that file until stop.
func meterCPU(pg *pgtest.Cluster, slot, profile string) (*runMeter, error) {
	m := &runMeter{wal: make(chan time.Duration, 1)}
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
	m.self, m.children = rusage(syscall.RUSAGE_SELF), rusage(syscall.RUSAGE_CHILDREN)
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() { m.wal <- walsenderCPU(ctx, pg, slot) }()
	return m, nil
}

func (m *runMeter) stop() cpuUse {
	self, children := rusage(syscall.RUSAGE_SELF), rusage(syscall.RUSAGE_CHILDREN)
	if m.prof != nil {
		pprof.StopCPUProfile()
		m.prof.Close()
	}
	m.cancel()
	return cpuUse{
		cdcd:      seconds(children - m.children),
		harness:   seconds(self - m.self),
		walsender: <-m.wal,
	}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

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
			if f, ok := procStat(int(pid)); ok {
				last = seconds(f.utime + f.stime)
			}
		}
		select {
		case <-ctx.Done():
			return last
		case <-tick.C:
		}
	}
}
