//go:build !linux

package postgres

import "time"

// smoothedRTT cannot tell on this platform.
func smoothedRTT(fd uintptr) (time.Duration, bool) { return 0, false }
