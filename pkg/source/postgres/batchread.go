package postgres

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// The walsender flushes its socket after every message, so a receiver that
// keeps up wakes once per message: an epoll wake-up, a read and a scheduler
// round trip for ~100 bytes, which costs more than decoding and storing the
// row — and the walsender's send path pays for waking us too. While the
// stream is busy, batchReader raises the socket's receive low-water mark
// (SO_RCVLOWAT) so the kernel wakes us only once batchBytes are queued, and
// caps each wait at batchWait, so the tail of a burst (or a keepalive) is
// held back by at most that long. When a wait times out the stream is
// taken to be quiet and the mark drops back to one byte: an idle stream
// wakes only for data, never for the timer.
const (
	// batchBytes is the low-water mark while busy: at the walsender's top
	// speed (~8 MB/s of pgoutput) about a millisecond of stream.
	batchBytes = 16 << 10
	// batchWait bounds how long queued data below the mark can wait.
	batchWait = 2 * time.Millisecond
	// busyGap: data arriving within this of the previous socket read means
	// the stream is busy.
	busyGap = batchWait
)

// batchReader sits between pgproto3's buffered reader and the connection's
// socket, so it runs once per read system call rather than once per
// message. Before streaming starts it only passes reads through. While
// streaming it arms the socket's read deadline (the caller's deadline from
// Receive, capped at batchWait while the low-water mark is raised) and
// adapts the low-water mark. It is used from the stream goroutine only,
// except interrupted.
type batchReader struct {
	r io.Reader // pgconn's reader of the socket

	streaming   bool
	conn        net.Conn
	raw         syscall.RawConn // nil: no low-water mark (not TCP)
	interrupted *atomic.Bool
	want        time.Time // the deadline the caller asked for
	armed       time.Time // the deadline armed on the socket
	lowat       int       // SO_RCVLOWAT now; 0 or 1 means off
	lastData    time.Time // start of the last socket read that returned data
	now         func() time.Time
}

func (b *batchReader) Read(p []byte) (int, error) {
	if !b.streaming {
		return b.r.Read(p)
	}
	now := b.now()
	dl := b.want
	if b.lowat > 1 {
		if c := now.Add(batchWait); c.Before(dl) {
			dl = c
		}
	}
	// Re-arming the socket timer costs; keep the armed deadline while it is
	// no later than wanted and not too close (a nearly spent deadline would
	// time out before a batch could gather).
	if !(b.armed.After(now) && !b.armed.After(dl) && (b.lowat <= 1 || b.armed.Sub(now) >= batchWait/2)) {
		if err := b.conn.SetReadDeadline(dl); err != nil {
			return 0, err
		}
		b.armed = dl
	}
	// After arming: Interrupt sets the flag before moving the deadline to
	// now, so either we see the flag or its deadline wins over ours.
	if b.interrupted.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	n, err := b.r.Read(p)
	if n > 0 {
		if b.lowat <= 1 && now.Sub(b.lastData) < busyGap {
			b.setLowat(batchBytes)
		}
		b.lastData = now
	} else if b.lowat > 1 && isTimeout(err) {
		// Quiet: let the next bytes wake us at once. What is queued below
		// the mark is returned by the next read without waiting.
		b.setLowat(1)
	}
	return n, err
}

// start switches from pass-through to streaming.
func (b *batchReader) start(conn net.Conn, interrupted *atomic.Bool) {
	b.streaming = true
	b.conn = conn
	b.interrupted = interrupted
	if b.now == nil {
		b.now = time.Now
	}
	if tc, ok := conn.(interface{ NetConn() net.Conn }); ok { // TLS
		conn = tc.NetConn()
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		if raw, err := tcp.SyscallConn(); err == nil {
			b.raw = raw
		}
	}
}

// setLowat sets SO_RCVLOWAT. Failing to is harmless (one wake-up per
// message again), so errors only turn batching off.
func (b *batchReader) setLowat(n int) {
	if b.raw == nil {
		return
	}
	var serr error
	if err := b.raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
	}); err != nil || serr != nil {
		b.raw = nil
		b.lowat = 0
		return
	}
	b.lowat = n
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
