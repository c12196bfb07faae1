//go:build !linux

package postgres

import "time"

// minRTT cannot tell on this platform.
func minRTT(fd uintptr) (time.Duration, bool) { return 0, false }

// received cannot tell on this platform: the reader never paces.
func received(fd uintptr) (tcpCounters, bool) { return tcpCounters{}, false }
