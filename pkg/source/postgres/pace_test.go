package postgres

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/decode"
)

// The rate follows what the socket receives: it grows while the walsender
// queues behind a closed window (large segments, bytes waiting), eases off
// as the queue drains, is cut below what was read when the segments fall
// back to one per message (and again every paceCutEvery until the queue
// builds), returns to paceRestore of the rate of that collapse once the
// queue is deep, and grows only slowly near it.
func TestPacerWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var p pacer
	var c tcpCounters
	// recv adds segs segments of size bytes each and leaves queued waiting.
	recv := func(segs, size, queued int) tcpCounters {
		c.segs += uint32(segs)
		c.bytes += uint64(segs * size)
		c.queued = queued
		return c
	}
	const mb = 1 << 20

	p.window(at(0), 20*mb, recv(1000, 100, 0))
	require.InDelta(t, 16*mb, p.rate, 1, "pacing starts at paceStart of the rate read")
	p.window(at(20), p.rate, recv(4, 55000, 512<<10))
	require.InDelta(t, 16*mb*paceGrow, p.rate, 1, "large segments, bytes waiting: the rate holds the stream back")
	p.window(at(40), p.rate, recv(0, 0, 512<<10))
	require.InDelta(t, 16*mb*paceGrow*paceGrow, p.rate, 1, "no segment in a window (the window closed) counts as large")
	before := p.rate
	p.window(at(60), 10*mb, recv(4, 55000, 1000))
	require.Equal(t, before, p.rate, "nothing waiting: the rate does not hold the stream back, no change")
	p.window(at(70), 10*mb, recv(5000, 100, 512<<10))
	require.Equal(t, before, p.rate, "small segments into a full queue: between states, no change")
	require.False(t, p.slow)
	p.window(at(75), before*0.5, recv(4, 55000, 512<<10))
	require.Equal(t, before, p.rate, "a full queue that cdcd, not the rate, left there (read half the rate): no growth")

	// The walsender falls back to a segment per message: a collapse. Cut
	// below what was read; the rate becomes the ceiling.
	ceil := p.rate
	p.window(at(80), 12*mb, recv(5000, 100, 8000))
	require.InDelta(t, 12*mb*paceCut, p.rate, 1)
	require.Equal(t, ceil, p.ceil)
	p.window(at(100), 9*mb, recv(5000, 100, 8000))
	require.InDelta(t, 12*mb*paceCut, p.rate, 1, "no second cut within paceCutEvery")
	p.window(at(180), 9*mb, recv(5000, 100, 8000))
	require.InDelta(t, 9*mb*paceCut, p.rate, 1, "the queue did not build in paceCutEvery: cut again")
	require.Equal(t, ceil, p.ceil, "the same collapse keeps its ceiling")
	p.window(at(300), 0, recv(3, 100, 0))
	require.InDelta(t, 9*mb*paceCut, p.rate, 1, "fewer than paceMinSegs segments do not judge, nothing waiting")

	// The queue builds again, but the walsender is fast only behind a
	// closed window: restore only once it is deep, to paceRestore of the
	// ceiling; then fast growth up to paceNear of it, then slow probing.
	r := p.rate
	p.window(at(320), p.rate, recv(4, 55000, 512<<10))
	require.Equal(t, r, p.rate, "not deep yet")
	require.True(t, p.slow)
	p.window(at(340), p.rate, recv(4, 55000, paceDeep))
	require.InDelta(t, max(r, paceRestore*ceil), p.rate, 1)
	require.False(t, p.slow)
	ms := 340
	for p.rate < paceNear*ceil {
		ms += 20
		r = p.rate
		p.window(at(ms), p.rate, recv(4, 55000, 768<<10))
		require.InDelta(t, r*paceGrow, p.rate, 1)
	}
	r = p.rate
	ms += 20
	p.window(at(ms), p.rate, recv(4, 55000, 768<<10))
	require.InDelta(t, r*paceProbe, p.rate, 1, "near the ceiling the rate probes slowly")

	// The queue drains below half its recent most while segments still
	// come: ease off before the window opens. Nothing comes: the
	// walsender paused or is done, read what is here.
	r = p.rate
	ms += 20
	p.window(at(ms), p.rate, recv(4, 55000, 100<<10))
	require.InDelta(t, r*paceEase, p.rate, 1)
	r = p.rate
	ms += 20
	p.window(at(ms), p.rate, recv(0, 0, 100<<10))
	require.InDelta(t, 2*r, p.rate, 1)

	// A collapse lowers (or raises) the ceiling to the rate that caused it.
	r = p.rate
	ms += 20
	p.window(at(ms), 30*mb, recv(5000, 100, 0))
	require.Equal(t, r, p.ceil)
	require.InDelta(t, r*paceCut, p.rate, 1)

	// The queue builds past paceDeep, even in small segments: restore,
	// then grow fast whatever the ceiling.
	ms += 20
	want := max(p.rate, paceRestore*p.ceil)
	p.window(at(ms), p.rate, recv(5000, 100, paceDeep))
	require.InDelta(t, want, p.rate, 1)
	require.False(t, p.slow)
	for range 20 {
		r = p.rate
		ms += 20
		p.window(at(ms), p.rate, recv(5000, 100, paceDeep))
		require.InDelta(t, r*paceGrow, p.rate, 1)
	}
	require.Greater(t, p.rate, p.ceil)

	// A capped buffer (net.core.rmem_max) makes a smaller queue deep.
	require.Equal(t, paceDeep, (&pacer{}).deep())
	require.Equal(t, 212992, (&pacer{rcvbuf: 425984}).deep())

	// On Ethernet no segment exceeds the MSS: full ones (1448 bytes)
	// count as large.
	eth := pacer{}
	c = tcpCounters{mss: 1448}
	eth.window(at(0), 10*mb, recv(0, 0, 0))
	r = eth.rate
	eth.window(at(20), eth.rate, recv(200, 1448, 512<<10))
	require.InDelta(t, r*paceGrow, eth.rate, 1, "full Ethernet segments into a waiting queue")
	eth.window(at(40), eth.rate, recv(2000, 100, 0))
	require.True(t, eth.slow, "message-sized segments on Ethernet: a collapse")
	c.mss = 0

	// Never below the floor.
	var low pacer
	low.window(at(0), 100, recv(1, 100, 0))
	require.Equal(t, float64(paceFloor), low.rate)
	low.window(at(20), 100, recv(1000, 100, 0))
	require.Equal(t, float64(paceFloor), low.rate)
}

// A paced read waits for a chunk of rate (at most paceChunk, at least what
// saturatedWait earns), never past the caller's deadline nor longer than
// saturatedWait, always makes progress, and its debt stays within a chunk.
func TestPacedReadWaits(t *testing.T) {
	now := time.Unix(1000, 0)
	var slept []time.Duration
	b := &batchReader{now: func() time.Time { return now }}
	b.sleep = func(d time.Duration) { slept = append(slept, d); now = now.Add(d) }
	b.want = now.Add(time.Minute)

	// 8 MiB/s: a 64 KiB chunk takes 7.8 ms to earn.
	b.pace = pacer{rate: 8 << 20, tokAt: now}
	p, due := b.paced(make([]byte, 1<<20))
	require.False(t, due)
	require.Len(t, slept, 1)
	require.InDelta(t, float64(paceChunk)/(8<<20)*1e9, float64(slept[0]), 1e3)
	require.Len(t, p, paceChunk)
	b.pace.took(len(p))

	// 1 MiB/s: the chunk is what saturatedWait earns (~10 KiB), so reads
	// that always wait their longest do not run into debt.
	slept = nil
	b.pace = pacer{rate: 1 << 20, tokAt: now}
	total := 0
	for range 50 {
		p, _ = b.paced(make([]byte, 1<<20))
		b.pace.took(len(p))
		total += len(p)
		require.GreaterOrEqual(t, b.pace.tokens, -b.pace.chunk(), "debt beyond a chunk")
	}
	for _, d := range slept {
		require.LessOrEqual(t, d, saturatedWait)
	}
	require.InDelta(t, float64(1<<20)*sum(slept).Seconds(), float64(total), b.pace.chunk()+1, "1 MiB/s is read at 1 MiB/s")
	b.pace.took(1 << 30)
	require.Equal(t, -b.pace.chunk(), b.pace.tokens, "a read on credit owes at most a chunk")

	// The caller's deadline comes first; when it has passed, due says so.
	slept = nil
	b.pace = pacer{rate: 1 << 20, tokAt: now}
	b.want = now.Add(time.Millisecond)
	_, due = b.paced(make([]byte, 1<<20))
	require.Equal(t, []time.Duration{time.Millisecond}, slept, "no wait past the caller's deadline")
	require.True(t, due)

	// At a high rate the tokens saved allow a larger read, up to paceBurst
	// of the rate and a chunk.
	slept = nil
	b.pace = pacer{rate: 64 << 20, tokAt: now.Add(-time.Second)}
	b.want = now.Add(time.Minute)
	p, due = b.paced(make([]byte, 4<<20))
	require.False(t, due)
	require.Empty(t, slept)
	require.Len(t, p, int(float64(64<<20)*paceBurst.Seconds())+paceChunk)
}

func sum(ds []time.Duration) (s time.Duration) {
	for _, d := range ds {
		s += d
	}
	return s
}

// A paced read whose wait outlasts the caller's deadline, or during which
// the stream is interrupted, returns a timeout without reading, though
// bytes are waiting, and leaves the low-water mark as it was.
func TestPacedReadTimesOut(t *testing.T) {
	client, server := tcpPair(t)
	b, intr := streamingReader(t, client)
	_, err := server.Write(make([]byte, 1000))
	require.NoError(t, err)
	b.setLowat(batchBytes)
	buf := make([]byte, 4096)

	b.pace = pacer{rate: 1 << 20, tokAt: time.Now()}
	b.want = time.Now().Add(time.Millisecond)
	n, err := b.Read(buf)
	require.Zero(t, n)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Equal(t, batchBytes, b.lowat, "a paced timeout is not a quiet stream")

	// An Interrupt while the read waits (what Source.Interrupt does: the
	// flag, then the deadline to now).
	b.sleep = func(d time.Duration) {
		intr.Store(true)
		require.NoError(t, client.SetReadDeadline(time.Now()))
	}
	b.pace = pacer{rate: 1 << 20, tokAt: time.Now()}
	b.want = time.Now().Add(time.Minute)
	n, err = b.Read(buf)
	require.Zero(t, n)
	require.True(t, isTimeout(err), "an interrupted paced read: %v", err)

	intr.Store(false)
	b.sleep = time.Sleep
	b.pace = pacer{}
	got, err := readFull(b, bufio.NewReader(b), 1000, func() time.Time { return time.Now().Add(10 * time.Second) })
	require.NoError(t, err)
	require.Len(t, got, 1000, "the waiting bytes are still there")
}

// Behind the source, a sender that writes as fast as it can is paced (on
// Linux, where the kernel reports what the socket received): the stream
// arrives intact. A stream that is not behind, inside a large transaction,
// or from a distant source is never paced.
func TestBatchReaderPaces(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("pacing reads TCP_INFO and SIOCINQ, on Linux only")
	}
	require.Zero(t, pacedReads(t, false, false, nil), "a stream that is not behind")
	require.Zero(t, pacedReads(t, true, true, nil), "a large transaction (saturation's case)")
	far := func() (time.Duration, bool) { return 20 * time.Millisecond, true }
	require.Zero(t, pacedReads(t, true, false, far), "a source 20 ms away")
	require.NotZero(t, pacedReads(t, true, false, nil), "a sender writing as fast as it can, behind")
}

// pacedReads streams 16 MiB in 1-2 KB writes as fast as the sender can
// through a reader with the given hints, checks it arrives intact, and
// counts the reads made while pacing.
func pacedReads(t *testing.T, behind, bulk bool, rtt func() (time.Duration, bool)) int {
	t.Helper()
	client, server := tcpPair(t)
	b, _ := streamingReader(t, client)
	b.behind, b.bulk, b.rtt = behind, bulk, rtt
	// 1-2 KB writes: well above saturatedRate even under the race
	// detector on a loaded machine.
	want := sendMessages(server, 5, 1000)
	got := make([]byte, 0, len(want))
	buf := make([]byte, 64<<10)
	count := 0
	pacedBuf := 0
	for len(got) < len(want) {
		b.want = time.Now().Add(time.Minute)
		if b.pace.rate > 0 {
			count++
			pacedBuf = b.pace.rcvbuf
		}
		n, err := b.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil && !isTimeout(err) {
			t.Fatal(err)
		}
	}
	require.True(t, bytes.Equal(got, want), "stream corrupted")
	if count > 0 {
		// Pacing fixed the receive buffer (Linux doubles it, within
		// net.core.rmem_max); ending it sets the saturated mark's.
		rmemMax := rmemMax(t)
		require.Equal(t, paceRcvbuf, b.rcvbuf)
		require.Equal(t, 2*min(paceRcvbuf, rmemMax), pacedBuf)
		b.stopPacing()
		require.Equal(t, afterPaceRcvbuf, b.rcvbuf)
		require.Equal(t, 2*min(afterPaceRcvbuf, rmemMax), rcvbuf(t, b))
		require.Zero(t, b.pace.rate)
	}
	return count
}

func rmemMax(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	require.NoError(t, err)
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	return n
}

func rcvbuf(t *testing.T, b *batchReader) (n int) {
	t.Helper()
	var err error
	require.NoError(t, b.raw.Control(func(fd uintptr) {
		n, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	}))
	require.NoError(t, err)
	return n
}

// The socket reader learns whether the stream is behind from each Begin:
// the server's send time against the commit time, both the source's
// clock. Catching up ends pacing.
func TestStreamHintsBehind(t *testing.T) {
	sock := &batchReader{}
	st := &Stream{src: &Source{sock: sock}, dec: decode.NewBorrowing(), spool: newSpool(t.TempDir())}
	begin := func(lag time.Duration) {
		t.Helper()
		commit := time.Unix(5000, 0)
		st.sent = commit.Add(lag).Sub(decode.Time(0)).Microseconds()
		_, err := st.event(context.Background(), decode.Event{Kind: decode.EventBegin, Tx: &change.Tx{CommitTime: commit}}, 0)
		require.NoError(t, err)
	}
	begin(10 * time.Millisecond)
	require.False(t, sock.behind, "a live stream")
	begin(behindLag)
	require.True(t, sock.behind, "a transaction sent behindLag after its commit")
	sock.pace.rate = 8 << 20
	begin(2 * time.Second)
	require.Equal(t, float64(8<<20), sock.pace.rate, "still behind: pacing goes on")
	begin(time.Millisecond)
	require.False(t, sock.behind, "caught up")
	require.Zero(t, sock.pace.rate, "caught up: no more pacing")

	// A streamed transaction has no Begin of its own before its Stream
	// Commit, which carries the hint.
	commit := time.Unix(6000, 0)
	st.sent = commit.Add(2 * time.Second).Sub(decode.Time(0)).Microseconds()
	ts := uint64(commit.Sub(decode.Time(0)).Microseconds())
	m := make([]byte, 30) // 'c', xid, flags, commit LSN, end LSN, commit time
	m[0], m[4] = 'c', 9
	for i := range 8 {
		m[22+i] = byte(ts >> (56 - 8*i))
	}
	_, err := st.decode(context.Background(), 0, m)
	require.NoError(t, err)
	require.True(t, sock.behind, "a streamed transaction sent 2 s after its commit")
}

// The kernel's counters of what a socket received (Linux).
func TestReceivedCounters(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("TCP_INFO and SIOCINQ are read on Linux only")
	}
	client, server := tcpPair(t)
	b, _ := streamingReader(t, client)
	_, err := server.Write(make([]byte, 10000))
	require.NoError(t, err)
	var c tcpCounters
	require.Eventually(t, func() bool {
		var ok bool
		err := b.raw.Control(func(fd uintptr) { c, ok = received(fd) })
		return err == nil && ok && c.queued == 10000
	}, 10*time.Second, time.Millisecond, "10000 bytes written, none read: counters %+v", &c)
	require.GreaterOrEqual(t, c.bytes, uint64(10000))
	require.NotZero(t, c.segs)
}
