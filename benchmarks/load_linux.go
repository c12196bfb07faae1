package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill c when the harness dies, even when
// nothing reaps the harness (kill -0 succeeds on a zombie).
func dieWithParent(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
