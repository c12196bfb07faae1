// Package checkpoint stores small positions durably in files: capture's
// acknowledged source position, and (later) each sink's applied position when
// the sink cannot hold it itself.
//
// Crash safety: a position is written to "<name>.tmp", fsynced, renamed over
// "<name>", and the directory is fsynced, so a reader finds either the old or
// the new position, never a torn one. The file holds the value and a CRC-32C
// of it; a file that fails the check is an error, never silently zero.
package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// filePerm is the mode of checkpoint files: owner only, like everything in
// the trail directory. It is explicit, so a umask can only narrow it.
const filePerm = 0o600

// magic identifies a checkpoint file and its layout version.
const magic = "CDCDCKP1"

// File is one durable uint64 position stored at a path.
type File struct {
	path string
}

// New returns the checkpoint stored at path. Nothing is read or written yet.
func New(path string) *File { return &File{path: path} }

// Path is the checkpoint's file path.
func (f *File) Path() string { return f.path }

// Load returns the stored position, or 0 and ok=false when none was stored.
func (f *File) Load() (pos uint64, ok bool, err error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read checkpoint: %w", err)
	}
	if len(b) != len(magic)+12 || string(b[:len(magic)]) != magic {
		return 0, false, fmt.Errorf("checkpoint %s is corrupt (bad size or magic): remove it only if you know the position to resume from", f.path)
	}
	body := b[len(magic) : len(magic)+8]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(magic)+8:]) {
		return 0, false, fmt.Errorf("checkpoint %s is corrupt (checksum mismatch): remove it only if you know the position to resume from", f.path)
	}
	return binary.LittleEndian.Uint64(body), true, nil
}

// Store durably replaces the stored position.
func (f *File) Store(pos uint64) error {
	b := make([]byte, 0, len(magic)+12)
	b = append(b, magic...)
	b = binary.LittleEndian.AppendUint64(b, pos)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[len(magic):], castagnoli))
	if err := WriteFile(f.path, b); err != nil {
		return fmt.Errorf("store checkpoint: %w", err)
	}
	return nil
}

// WriteFile durably replaces the file at path with b: b is written to
// "<path>.tmp" (mode 0600, owner only, whatever the umask or a leftover
// temporary's mode) and fsynced, renamed over path, and the directory
// fsynced. After a crash a reader finds the old content or the new, never a
// torn mix — every small state file in the trail directory is stored so.
func WriteFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := writeSync(tmp, b); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if err := SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

func writeSync(path string, b []byte) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, filePerm)
	if err != nil {
		return err
	}
	// The mode given to O_CREATE does not apply to a file that already
	// exists (a temporary left by a crash of an older version): set it.
	if err := fh.Chmod(filePerm); err != nil {
		fh.Close()
		return err
	}
	if _, err := fh.Write(b); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// SyncDir fsyncs a directory so that a create, rename or remove in it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
