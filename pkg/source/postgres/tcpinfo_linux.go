package postgres

import (
	"time"

	"golang.org/x/sys/unix"
)

// minRTT is the smallest round-trip time the kernel has seen on the TCP
// socket fd (TCP_INFO's min_rtt); ok is false when it cannot tell. Not the
// smoothed RTT: on a socket that mostly receives, it comes from our rare
// status updates, whose ACKs the peer may delay. Measured in the benchmarks
// on loopback: smoothed 8–12 ms, min_rtt 6 µs.
func minRTT(fd uintptr) (rtt time.Duration, ok bool) {
	info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, false
	}
	return time.Duration(info.Min_rtt) * time.Microsecond, true
}

// received reads the socket's count of received data segments and bytes
// and its MSS (TCP_INFO), and the bytes waiting to be read (SIOCINQ); ok is
// false when it cannot tell.
func received(fd uintptr) (c tcpCounters, ok bool) {
	info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return c, false
	}
	queued, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	if err != nil {
		return c, false
	}
	return tcpCounters{segs: info.Data_segs_in, bytes: info.Bytes_received, queued: queued, mss: int(info.Advmss)}, true
}
