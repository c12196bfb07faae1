package postgres

import (
	"syscall"
	"time"
)

// Catching up. When cdcd is behind the source (a backlog after a restart
// or an outage), the walsender sends as fast as it can, and a reader that
// keeps up makes it slow: with the receive window open, every pgoutput
// message's send(2) leaves as a TCP segment of its own (~100 bytes for a
// single-row transaction), and on loopback the receiving side of each
// segment is charged to the sender too. Measured on a 2-core VM (full-size
// backlog of 200k single-row transactions, an instrumented build): the
// walsender then delivers 6-10 MB/s in segments averaging 60-110 bytes.
// With the window closed, its sends only queue, the queue leaves in
// segments of 55-65 KB, and the same walsender delivers up to 25-37 MB/s.
// Both states are stable: a fast reader keeps the walsender in the slow
// one. (PostgreSQL's own apply worker lags behind its walsender and so
// keeps the window closed by accident.)
//
// So once the stream is behind (Source.hintBehind) with small transactions
// (not bulk, where saturation applies) and runs at saturatedRate or more,
// the reader paces itself: it fixes its receive buffer (paceRcvbuf: an
// autotuned one grows until no queue closes the window), takes at most
// pacer.rate bytes per second, and adjusts the rate every rate window from
// what the socket received (TCP_INFO) and holds (SIOCINQ):
//   - while bytes wait (paceBacklog or more) and the segments are large
//     (coalescedSeg, or half the link's MSS), or while the queue is deep
//     (pacer.deep) whatever the segments, the rate holds the stream back:
//     it grows, fast (paceGrow) up to paceNear of the ceiling (below), or
//     whenever the queue is deep, and slowly (paceProbe) otherwise;
//   - when, in those cases, what waits falls below half the most that
//     waited lately, the walsender no longer keeps up: the rate eases off
//     (paceEase), unless nothing arrives at all (the walsender paused or
//     is done: the rate doubles, so what is here is not held back);
//   - when less than paceBacklog waits and the segments are small, the
//     walsender has fallen back to a segment per message: a collapse. Its
//     rate becomes the ceiling, and the rate is cut below what was read,
//     again every paceCutEvery until a deep queue shows the window closed
//     again; then it goes back to paceRestore of the ceiling;
//   - otherwise the walsender is between the two: the rate holds.
//
// It never paces a source farther than saturatedMaxRTT (see near), where
// the window is what carries the stream, nor a stream that is not behind.
const (
	// paceStart: pacing starts at this share of the rate read so far.
	paceStart = 0.8
	// coalescedSeg: received segments averaging less than this (bytes)
	// show the walsender sending a segment per message.
	coalescedSeg = 2048
	// paceMinSegs segments in a window are needed to judge their size.
	paceMinSegs = 8
	// paceCut is the share of the rate read that a collapse leaves.
	paceCut = 0.8
	// paceCutEvery: the least time between cuts, for the queue to build.
	paceCutEvery = 100 * time.Millisecond
	// paceRestore: once the queue builds again after a collapse, the rate
	// goes back to this share of the ceiling (each collapse lowers the
	// ceiling to the rate that caused it, so a ceiling that no longer
	// holds comes down geometrically).
	paceRestore = 0.5
	// paceEase per window while the queue has drained below half its
	// recent most (paceQDecay per window).
	paceEase   = 0.95
	paceQDecay = 0.98
	// paceBacklog queued bytes show that the rate holds the stream back.
	paceBacklog = 64 << 10
	// paceDeep queued bytes mean the rate is far too low, or half the
	// receive buffer when that is less (see pacer.deep).
	paceDeep = 1 << 20
	// paceRcvbuf is SO_RCVBUF while pacing. Linux doubles it for its
	// bookkeeping and caps it at net.core.rmem_max (208 KiB by default:
	// a 416 KiB buffer, whose ~200 KiB window still carries 40 MB/s at
	// saturatedMaxRTT). afterPaceRcvbuf is SO_RCVBUF after pacing: what
	// raising the mark to saturatedBytes sets on an autotuned socket
	// (tcp_set_rcvlowat), so a later large transaction's window closes
	// near the mark as it did before pacing.
	paceRcvbuf      = 1 << 20
	afterPaceRcvbuf = saturatedBytes
	// paceGrow per rate window below paceNear of the ceiling, paceProbe
	// above it (×11.5 and ×1.1 per second), and only while the reader
	// took at least paceBound of the rate.
	paceGrow  = 1.05
	paceProbe = 1.002
	paceNear  = 0.85
	paceBound = 0.9
	// paceFloor is the lowest rate (bytes per second).
	paceFloor = 1 << 20
	// paceChunk is the most a paced read waits to take (see chunk),
	// paceMinChunk the least, and paceBurst how much unused rate it may
	// save up.
	paceChunk    = 64 << 10
	paceMinChunk = 4 << 10
	paceBurst    = 5 * time.Millisecond
)

// tcpCounters are a socket's received segments and bytes since it opened
// and the bytes waiting to be read.
type tcpCounters struct {
	segs   uint32
	bytes  uint64
	queued int
	mss    int // the largest segment the link carries (0: unknown)
}

// pacer holds a paced reader's rate and its token bucket.
type pacer struct {
	rcvbuf int     // the socket's buffer while pacing (bytes, as the kernel reports it); 0: unknown
	rate   float64 // bytes per second; 0: not pacing
	ceil   float64 // the rate at the last collapse; 0: none yet
	qMax   float64 // the most queued lately (decaying)
	cutAt  time.Time
	slow   bool        // the walsender sends a segment per message (since the last collapse)
	last   tcpCounters // at the start of the rate window
	tokens float64
	tokAt  time.Time
}

// window adjusts the rate at the end of a rate window, in which the
// reader took read bytes per second and after which the socket counts c.
// The first call starts pacing.
func (p *pacer) window(now time.Time, read float64, c tcpCounters) {
	segs, bytes := c.segs-p.last.segs, c.bytes-p.last.bytes
	p.last = c
	p.qMax = max(p.qMax*paceQDecay, float64(c.queued))
	if p.rate == 0 {
		p.rate = max(paceFloor, read*paceStart)
		p.tokens, p.tokAt = 0, now
		return
	}
	held := c.queued >= paceBacklog // the rate holds the stream back
	// Coalesced: no segment carries less than half the link's MSS (1448
	// bytes on Ethernet, 64 KB on loopback) up to coalescedSeg.
	large := float64(coalescedSeg)
	if c.mss > 0 {
		large = min(large, float64(c.mss/2))
	}
	coalesced := segs < paceMinSegs || float64(bytes) >= large*float64(segs)
	deep := c.queued >= p.deep()
	switch {
	case !held && !coalesced:
		if !p.slow {
			// A collapse: the rate that caused it is the ceiling.
			p.slow, p.ceil = true, p.rate
		} else if now.Sub(p.cutAt) < paceCutEvery {
			return // give the queue time to build
		}
		p.rate = max(paceFloor, min(p.rate, read)*paceCut)
		p.cutAt = now
	case held && coalesced || deep:
		switch {
		case p.slow && !deep:
			// Not yet: the walsender is fast only behind a closed
			// window, which a deep queue shows.
		case p.slow:
			// The queue built again: the walsender is back to large
			// segments and sends at its fast rate.
			p.slow = false
			p.rate = max(p.rate, paceRestore*p.ceil)
		case read < paceBound*p.rate:
			// cdcd itself, not the rate, held the stream back: growing
			// would only unbind the rate from what is read.
		case float64(c.queued) < p.qMax/2 && bytes < paceMinChunk:
			// The queue drains and nothing comes: the walsender has
			// paused or is done. Do not hold back what is here.
			p.rate *= 2
		case float64(c.queued) < p.qMax/2:
			// The queue drains: the walsender no longer keeps up with
			// the rate, and the window is about to open. Ease off before
			// it collapses.
			p.rate = max(paceFloor, p.rate*paceEase)
		case p.ceil == 0 || p.rate < paceNear*p.ceil || deep:
			// (Far more waiting than the walsender's queue needs: the
			// rate is too low, whatever the segments and the ceiling.)
			p.rate *= paceGrow
		default:
			p.rate *= paceProbe
		}
	}
	// Otherwise (small segments into a full queue, or large ones into an
	// empty one) the walsender is between states: hold.
}

// deep is how much waiting shows the window closed: paceDeep, or half the
// receive buffer when that is less (a capped net.core.rmem_max).
func (p *pacer) deep() int {
	if p.rcvbuf > 0 {
		return min(paceDeep, p.rcvbuf/2)
	}
	return paceDeep
}

// chunk is the least a paced read waits to take: paceChunk, or what the
// rate earns in saturatedWait when that is less (a slow rate's reads
// would otherwise run into debt).
func (p *pacer) chunk() float64 {
	return max(paceMinChunk, min(paceChunk, p.rate*saturatedWait.Seconds()))
}

// refill adds the tokens earned since the last refill.
func (p *pacer) refill(now time.Time) {
	p.tokens = min(p.tokens+p.rate*now.Sub(p.tokAt).Seconds(), p.rate*paceBurst.Seconds()+p.chunk())
	p.tokAt = now
}

// took spends the tokens of n bytes read; the debt of reads taken on
// credit is bounded by a chunk.
func (p *pacer) took(n int) {
	p.tokens = max(p.tokens-float64(n), -p.chunk())
}

// paced returns p cut to what the rate allows now, after waiting (never
// past the caller's deadline, nor longer than saturatedWait) for a chunk
// of it; due says the caller's deadline passed meanwhile.
func (b *batchReader) paced(p []byte) (_ []byte, due bool) {
	pc := &b.pace
	now := b.now()
	pc.refill(now)
	if c := pc.chunk(); pc.tokens < c {
		wait := min(time.Duration((c-pc.tokens)/pc.rate*float64(time.Second)), saturatedWait, b.want.Sub(now))
		if wait > 0 {
			b.sleep(wait)
			now = b.now()
			pc.refill(now)
		}
	}
	// A read that waited its longest takes a chunk on credit, repaid by
	// the next waits: every read makes progress.
	if n := int(max(pc.tokens, pc.chunk())); n < len(p) {
		p = p[:n]
	}
	return p, !now.Before(b.want)
}

// paceWindow starts, adjusts or ends pacing at the end of a rate window in
// which the reader took read bytes per second.
func (b *batchReader) paceWindow(now time.Time, read float64) {
	if !b.behind || b.bulk || b.raw == nil {
		b.stopPacing()
		return
	}
	if b.pace.rate == 0 && read < saturatedRate {
		return
	}
	if !b.near() {
		b.stopPacing()
		return
	}
	var c tcpCounters
	var ok bool
	if b.raw.Control(func(fd uintptr) { c, ok = received(fd) }) != nil || !ok {
		b.stopPacing()
		return
	}
	if b.pace.rate == 0 {
		// A fixed receive buffer: autotuning grows it to several MB as
		// the reader speeds up, and a window that large stays open (and
		// the walsender's segments small) however much waits in it.
		b.pace.rcvbuf = b.setRcvbuf(paceRcvbuf)
	}
	b.pace.window(now, read, c)
}

// stopPacing ends pacing. A buffer fixed for it becomes a large one: a
// fixed buffer is never autotuned again, and a large transaction's
// saturated reads want more than pacing's.
func (b *batchReader) stopPacing() {
	b.pace = pacer{}
	if b.rcvbuf == paceRcvbuf {
		b.setRcvbuf(afterPaceRcvbuf)
	}
}

// setRcvbuf sets SO_RCVBUF and returns the buffer the kernel then reports
// (doubled for its bookkeeping, capped by net.core.rmem_max; 0: unknown).
func (b *batchReader) setRcvbuf(n int) (got int) {
	b.rcvbuf = n
	if b.raw != nil {
		_ = b.raw.Control(func(fd uintptr) {
			if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n) == nil {
				got, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
			}
		})
	}
	return got
}

// hintBehind tells the reader whether the stream is behind the source: the
// transaction it is reading committed behindLag or more before the server
// sent it. Only then may it pace.
func (s *Source) hintBehind(behind bool) {
	if s.sock != nil && s.sock.behind != behind {
		s.sock.behind = behind
		if !behind {
			s.sock.stopPacing()
		}
	}
}
