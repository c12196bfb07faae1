package pgtest

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// serverUser is the OS user the server runs as when the process is root.
const serverUser = "postgres"

func asRoot() bool { return os.Geteuid() == 0 }

var postgresIDs = sync.OnceValues(func() ([2]int, error) {
	u, err := user.Lookup(serverUser)
	if err != nil {
		return [2]int{}, fmt.Errorf("running as root needs the %q OS user to run PostgreSQL (installing postgresql-15 creates it; run `make deps`): %w", serverUser, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return [2]int{}, fmt.Errorf("uid of %s: %w", serverUser, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return [2]int{}, fmt.Errorf("gid of %s: %w", serverUser, err)
	}
	return [2]int{uid, gid}, nil
})

// asServerUser prepares cmd to run in dir as the server user (postgres when root,
// else ourselves) with an environment free of PG* variables, which would otherwise
// redirect the tools to another server or data directory.
func asServerUser(cmd *exec.Cmd, dir string) error {
	cmd.Dir = dir
	env := os.Environ()[:0:0]
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "LC_ALL=C")
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if !asRoot() {
		return nil
	}
	ids, err := postgresIDs()
	if err != nil {
		return err
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(ids[0]), Gid: uint32(ids[1])}
	cmd.Env = append(cmd.Env, "HOME="+dir, "USER="+serverUser, "LOGNAME="+serverUser)
	return nil
}

// chownR gives path and everything below it to the server user when we are root.
func chownR(path string) error {
	if !asRoot() {
		return nil
	}
	ids, err := postgresIDs()
	if err != nil {
		return err
	}
	return filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, ids[0], ids[1])
	})
}
