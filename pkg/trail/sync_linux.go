package trail

import (
	"os"
	"syscall"
)

// fdatasync skips the inode timestamp update fsync would also write; the file
// size, which every append changes, is still synced.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
