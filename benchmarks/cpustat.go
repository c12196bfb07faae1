package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// cpuMeter reads the CPU time (user + system, seconds) a PostgreSQL server
// and this process have used so far, so a scenario can say where a run's
// CPU went: wall-clock ratios on a shared 2-core machine swing with the
// other work on it, CPU seconds per side much less.
type cpuMeter struct {
	servers []string // data directories
}

// cpuSample is one reading: per server, then this process and its reaped
// children (pg_dump, psql…).
type cpuSample struct {
	servers        []float64
	self, children float64
}

func (m cpuMeter) read() cpuSample {
	s := cpuSample{self: rusage(syscall.RUSAGE_SELF), children: rusage(syscall.RUSAGE_CHILDREN)}
	for _, d := range m.servers {
		s.servers = append(s.servers, serverCPU(d))
	}
	return s
}

// sub is s - o.
func (s cpuSample) sub(o cpuSample) cpuSample {
	d := cpuSample{self: s.self - o.self, children: s.children - o.children}
	for i := range s.servers {
		d.servers = append(d.servers, s.servers[i]-o.servers[i])
	}
	return d
}

func rusage(who int) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// serverCPU is the CPU time of the server whose data directory is dataDir:
// the postmaster's own, its exited children's (backends, parallel
// workers) and its running children's (background processes). Linux only;
// 0 when /proc cannot tell.
func serverCPU(dataDir string) float64 {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pm, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return 0
	}
	f, ok := procStat(pm)
	if !ok {
		return 0
	}
	t := f.utime + f.stime + f.cutime + f.cstime
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if c, ok := procStat(pid); ok && c.ppid == pm {
			t += c.utime + c.stime
		}
	}
	return t
}

type procFields struct {
	ppid                         int
	utime, stime, cutime, cstime float64
}

// procStat reads /proc/pid/stat (times in seconds, at 100 ticks a second).
func procStat(pid int) (procFields, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procFields{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return procFields{}, false
	}
	f := strings.Fields(s[i+2:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return procFields{}, false
	}
	num := func(i int) float64 { v, _ := strconv.ParseFloat(f[i], 64); return v / 100 }
	ppid, _ := strconv.Atoi(f[1])
	return procFields{ppid: ppid, utime: num(11), stime: num(12), cutime: num(13), cstime: num(14)}, true
}
