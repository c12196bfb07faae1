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
// wakes only for data, never for the timer (after saturation, below, once
// its rate window has ended).
//
// Saturated. When the walsender sends as fast as it can — a backlog, a
// large transaction — a receiver that keeps up costs the walsender itself:
// with the TCP window open, each message's send(2) transmits a segment of
// its own (on loopback, with our side's receive processing charged to it as
// well). Measured on a 2-core VM, the walsender spent 15–21 µs of CPU per
// single-row transaction feeding cdcd against ~9.5 µs feeding PostgreSQL's
// own apply worker, which lags behind it: with the window closed, send(2)
// only queues, and the queue leaves in large segments when the window
// opens. So inside a large transaction (a streamed one, or one past
// bulkRows changes: Source.hintBulk), while the stream runs at
// saturatedRate or more (measured over windows of saturatedFor; a live
// workload's stream is far slower: a 1,000 tx/s pgbench mix is ~1 MB/s),
// the mark rises to saturatedBytes and a wait
// lasts up to saturatedWait: the reader takes the stream in large gulps at
// least that often, the stream queues in between (raising the mark also
// caps the receive window near it when the kernel grows the buffer to hold
// it), and the walsender's sends more often find the window closed and only
// queue. The cost is latency while saturated (up to saturatedWait), when
// the stream is behind the source anyway; a window below saturatedRate
// ends it. Measured on that VM (full-size benchmarks, streaming on, runs
// alternating with the reader without saturation): one 1M-row INSERT
// transaction applied at 0.82–0.91 of native's rate instead of 0.56–0.64,
// and a 1M-row UPDATE at 0.88–0.95 instead of 0.66–0.74
// (benchmarks/results/2026-11-30-vm-full-bulkread-*); the first version,
// which saturated on any stream, streamed the INSERT in half the time.
// A backlog of single-row transactions, which a reader that keeps up still
// drains a little at a time, did not gain, and is left out (hintBulk).
const (
	// batchBytes is the low-water mark while busy: at ~8 MB/s of pgoutput
	// about two milliseconds of stream.
	batchBytes = 16 << 10
	// batchWait bounds how long queued data below the mark can wait while
	// busy (saturatedWait while saturated).
	batchWait = 2 * time.Millisecond
	// busyGap: data arriving within this of the previous socket read means
	// the stream is busy.
	busyGap = batchWait
	// saturatedRate, measured over saturatedFor, means the walsender
	// sends as fast as it can (bytes per second).
	saturatedRate = 4 << 20
	saturatedFor  = 20 * time.Millisecond
	// saturatedBytes is the mark while saturated, and saturatedWait the
	// longest wait for it.
	saturatedBytes = 256 << 10
	saturatedWait  = 10 * time.Millisecond
	// saturatedMaxRTT: a source farther away never saturates (see near).
	saturatedMaxRTT = 5 * time.Millisecond
)

// batchReader sits between pgproto3's buffered reader and the connection's
// socket, so it runs once per read system call rather than once per
// message. Before streaming starts it only passes reads through. While
// streaming it arms the socket's read deadline (the caller's deadline from
// Receive, capped at batchWait, or saturatedWait, while the low-water mark
// is raised) and adapts the low-water mark. It is used from the stream
// goroutine only, except interrupted.
type batchReader struct {
	r io.Reader // pgconn's reader of the socket

	streaming   bool
	conn        net.Conn
	raw         syscall.RawConn // nil: no low-water mark (not TCP)
	interrupted *atomic.Bool
	want        time.Time                    // the deadline the caller asked for
	armed       time.Time                    // the deadline armed on the socket
	lowat       int                          // SO_RCVLOWAT now; 0 or 1 means off
	bulk        bool                         // inside a large transaction (Source.hintBulk)
	behind      bool                         // behind the source (Source.hintBehind)
	pace        pacer                        // catching up: the read rate (pace.go)
	rcvbuf      int                          // SO_RCVBUF as set (pace.go); 0: autotuned
	rtt         func() (time.Duration, bool) // tests: the link's RTT; nil: the socket's
	lastData    time.Time                    // start of the last socket read that returned data
	// The rate window: bytes read since winStart.
	winStart time.Time
	winBytes int
	now      func() time.Time
	sleep    func(time.Duration)
}

func (b *batchReader) Read(p []byte) (int, error) {
	if !b.streaming {
		return b.r.Read(p)
	}
	if b.pace.rate > 0 {
		// Before arming the deadline, which the wait could spend. An
		// Interrupt meanwhile is seen by the flag check below.
		var due bool
		if p, due = b.paced(p); due {
			// The caller's deadline passed while waiting: a timeout, as
			// the socket would give, without its read (which would
			// count as a quiet stream and drop the mark).
			return 0, os.ErrDeadlineExceeded
		}
	}
	now := b.now()
	dl := b.want
	if b.lowat > 1 {
		if c := now.Add(b.wait()); c.Before(dl) {
			dl = c
		}
	}
	// Re-arming the socket timer costs; keep the armed deadline while it is
	// no later than wanted and not too close (a nearly spent deadline would
	// time out before a batch could gather).
	if !(b.armed.After(now) && !b.armed.After(dl) && (b.lowat <= 1 || b.armed.Sub(now) >= b.wait()/2)) {
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
	b.winBytes += n
	if b.pace.rate > 0 {
		b.pace.took(n)
	}
	if d := now.Sub(b.winStart); d >= saturatedFor {
		// One burst read at once (a large transaction, or a reader that
		// paused) can make a window count: its tail then waits up to
		// saturatedWait once. Requiring two windows in a row avoided that
		// but measured slower (the 1M-row INSERT in 7.6 s, twice, against
		// 6.2-6.6 s).
		rate := float64(b.winBytes) / d.Seconds()
		saturated := b.bulk && rate >= saturatedRate
		switch {
		case saturated && b.lowat != saturatedBytes && b.near():
			b.setLowat(saturatedBytes)
		case !saturated && b.lowat == saturatedBytes:
			b.setLowat(1) // a busy stream raises it again
		}
		if b.behind || b.pace.rate > 0 {
			b.paceWindow(now, rate)
		}
		b.winStart, b.winBytes = now, 0
	}
	if n > 0 {
		if b.lowat <= 1 && now.Sub(b.lastData) < busyGap {
			b.setLowat(batchBytes)
		}
		b.lastData = now
	} else if b.lowat > 1 && b.lowat != saturatedBytes && isTimeout(err) {
		// Quiet: let the next bytes wake us at once. What is queued below
		// the mark is returned by the next read without waiting. (While
		// saturated, a wait that times out only returns what is queued;
		// the rate decides when that ends.)
		b.setLowat(1)
	}
	return n, err
}

// wait is how long a read waits for the mark before the stream counts as
// quiet.
func (b *batchReader) wait() time.Duration {
	if b.lowat == saturatedBytes {
		return saturatedWait
	}
	return batchWait
}

// hintBulk tells the reader whether the stream is inside a large
// transaction: only then may it saturate. A backlog of small transactions
// is as fast a stream, but gulping it did not gain alone (full size,
// 2-core VM: 0.83 of native against 0.62-0.94 without), and it was suspected
// of a 0.26 ci backlog beside a test suite. Under two busy loops the same
// backlog code varied from 11k to 25.5k tx/s between runs, too much to
// settle it (benchmarks/results/2026-11-30-vm-ci-load2-*), so small
// transactions keep the 16 KiB / 2 ms batches.
func (s *Source) hintBulk(bulk bool) {
	if s.sock != nil {
		s.sock.bulk = bulk
		if bulk {
			s.sock.stopPacing()
		}
	}
}

// near says whether the source is close enough to saturate. Raising
// SO_RCVLOWAT makes Linux clamp the receive window to the mark when it
// grows the buffer for it, and lowering the mark does not undo that: over
// a link with a long round trip a 256 KiB window caps the stream at 256 KiB
// per round trip (26 MB/s at 10 ms, 5 MB/s at 50 ms), far below what the
// kernel's autotuning would allow. Up to saturatedMaxRTT the cap (51 MB/s)
// is above what a walsender sends; an RTT the platform cannot report
// counts as near.
func (b *batchReader) near() bool {
	rtt, ok := b.rttNow()
	return !ok || rtt <= saturatedMaxRTT
}

func (b *batchReader) rttNow() (time.Duration, bool) {
	if b.rtt != nil {
		return b.rtt()
	}
	if b.raw == nil {
		return 0, false
	}
	var rtt time.Duration
	var ok bool
	if b.raw.Control(func(fd uintptr) { rtt, ok = minRTT(fd) }) != nil {
		return 0, false
	}
	return rtt, ok
}

// start switches from pass-through to streaming.
func (b *batchReader) start(conn net.Conn, interrupted *atomic.Bool) {
	b.streaming = true
	b.conn = conn
	b.interrupted = interrupted
	if b.now == nil {
		b.now = time.Now
	}
	if b.sleep == nil {
		b.sleep = time.Sleep
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
