package postgres

import (
	"time"

	"golang.org/x/sys/unix"
)

// smoothedRTT is the kernel's smoothed round-trip time of the TCP socket
// fd (TCP_INFO); ok is false when it cannot tell.
func smoothedRTT(fd uintptr) (rtt time.Duration, ok bool) {
	info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, false
	}
	return time.Duration(info.Rtt) * time.Microsecond, true
}
