package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProcStat(t *testing.T) {
	before, ok := procStat(os.Getpid())
	require.True(t, ok)
	assert.Equal(t, os.Getppid(), before.ppid)
	burn(t, before.utime+before.stime+0.01)
	_, ok = procStat(-1)
	assert.False(t, ok)
}

// burn uses CPU until /proc shows the process at cpu seconds or more.
func burn(t *testing.T, cpu float64) {
	for x := 0; ; x++ {
		now, ok := procStat(os.Getpid())
		require.True(t, ok)
		if now.utime+now.stime >= cpu {
			return
		}
		_ = strconv.Itoa(x)
	}
}

func TestServerCPU(t *testing.T) {
	// A "postmaster" that is this process: its own time counts, and a
	// missing or unreadable postmaster.pid reads 0.
	dir := t.TempDir()
	assert.Zero(t, serverCPU(dir))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(strconv.Itoa(os.Getpid())+"\n/data\n"), 0o600))
	burn(t, 0.02)
	self := rusage(0) // RUSAGE_SELF
	got := serverCPU(dir)
	assert.Greater(t, got, 0.0)
	assert.InDelta(t, self, got, 0.1, "the process's own CPU time, at 10 ms resolution")
}
