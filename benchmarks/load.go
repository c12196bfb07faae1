package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
)

// startLoad runs n busy loops beside the benchmark (-load n), so its figures
// can be taken under CPU contention, as on a shared intermediary host. Each
// loop is a shell that spins while this process lives, so a harness that
// dies without stopping them does not leave them behind. stop ends them.
func startLoad(n int) (stop func(), err error) {
	var loops []*exec.Cmd
	stop = func() {
		for _, c := range loops {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
	spin := "while kill -0 " + strconv.Itoa(os.Getpid()) + " 2>/dev/null; do :; done"
	for range n {
		c := exec.Command("sh", "-c", spin)
		dieWithParent(c)
		if err := c.Start(); err != nil {
			stop()
			return nil, fmt.Errorf("-load: start a busy loop: %w", err)
		}
		loops = append(loops, c)
	}
	return stop, nil
}
