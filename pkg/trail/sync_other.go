//go:build !linux

package trail

import "os"

func fdatasync(f *os.File) error { return f.Sync() }
