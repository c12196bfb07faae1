package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// -load n runs n processes that use CPU, and stop ends them all.
func TestStartLoad(t *testing.T) {
	stop, err := startLoad(2)
	require.NoError(t, err)
	defer stop()
	kids := children(t)
	require.Len(t, kids, 2, "busy loops running")
	// Wait for the loops to use CPU (5 ticks, 50 ms at the usual 100 Hz);
	// a loop that only sleeps never gets there.
	start := cpuTicks(t, kids)
	require.Eventually(t, func() bool { return cpuTicks(t, kids)-start > 5 },
		10*time.Second, 20*time.Millisecond, "the busy loops used no CPU")
	stop()
	require.Empty(t, children(t), "busy loops left after stop")
}

// children lists this process's child shells (other tests' servers are not
// shells).
func children(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		comm := string(stat[strings.IndexByte(string(stat), '(')+1 : strings.LastIndexByte(string(stat), ')')])
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		if comm == "sh" && f[0] != "Z" && f[1] == strconv.Itoa(os.Getpid()) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cpuTicks sums utime and stime of pids, in clock ticks.
func cpuTicks(t *testing.T, pids []int) int {
	t.Helper()
	sum := 0
	for _, pid := range pids {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		require.NoError(t, err)
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		for _, i := range []int{11, 12} { // utime, stime
			n, err := strconv.Atoi(f[i])
			require.NoError(t, err)
			sum += n
		}
	}
	return sum
}
