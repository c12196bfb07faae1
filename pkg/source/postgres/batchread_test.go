package postgres

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-acc
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func streamingReader(t *testing.T, conn net.Conn) (*batchReader, *atomic.Bool) {
	t.Helper()
	var intr atomic.Bool
	b := &batchReader{r: conn}
	b.start(conn, &intr)
	if b.raw == nil {
		t.Fatal("no raw connection for a TCP socket")
	}
	return b, &intr
}

// readFull reads n bytes through b, retrying on timeouts as Receive's
// caller does, with want as the caller's deadline each time.
func readFull(b *batchReader, br *bufio.Reader, n int, want func() time.Time) ([]byte, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, 4096)
	for len(out) < n {
		b.want = want()
		k, err := br.Read(buf[:min(len(buf), n-len(out))])
		out = append(out, buf[:k]...)
		if err != nil && !isTimeout(err) {
			return out, err
		}
	}
	return out, nil
}

// The bytes come through unchanged however the writer slices them, with the
// low-water mark going up and down on the way.
func TestBatchReaderDeliversStream(t *testing.T) {
	client, server := tcpPair(t)
	b, _ := streamingReader(t, client)
	br := bufio.NewReaderSize(b, 256<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	want := make([]byte, 2<<20)
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	go func() {
		rest := want
		for i := 0; len(rest) > 0; i++ {
			n := min(len(rest), 1+rng.IntN(300))
			if i%50 == 0 {
				n = min(len(rest), rng.IntN(64<<10))
			}
			if _, err := server.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
			if i%200 == 0 {
				// Not a wait for anything: a gap longer than batchWait in
				// the stream, so timeouts lower the mark on the way.
				time.Sleep(3 * time.Millisecond)
			}
		}
	}()
	got, err := readFull(b, br, len(want), func() time.Time { return time.Now().Add(time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("stream corrupted")
	}
}

// Busy reads raise the mark; a wait that times out lowers it; a small
// message below the mark still arrives within about batchWait.
func TestBatchReaderAdaptsLowWaterMark(t *testing.T) {
	client, server := tcpPair(t)
	b, _ := streamingReader(t, client)
	b.want = time.Now().Add(time.Minute)
	buf := make([]byte, 1024)
	// Quick reads in a row (a loaded machine may need a few tries).
	for i := 0; i < 100 && b.lowat != batchBytes; i++ {
		if _, err := server.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if b.lowat != batchBytes {
		t.Fatalf("lowat %d after quick reads, want %d", b.lowat, batchBytes)
	}
	// One small message below the mark: held back at most ~batchWait.
	start := time.Now()
	if _, err := server.Write([]byte("tail")); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for len(got) < 4 {
		n, err := b.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil && !isTimeout(err) {
			t.Fatal(err)
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("small message below the mark never arrived")
		}
	}
	if string(got) != "tail" {
		t.Fatalf("got %q", got)
	}
	// Held back until the caller's deadline (a minute away) would be the
	// bug; 10s leaves a loaded machine's scheduling delays far below that.
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("small message took %v, want about %v", d, batchWait)
	}
	// Quiet stream: a timed-out wait drops the mark so idle waits are not
	// cut short by the batch timer.
	for b.lowat > 1 {
		if _, err := b.Read(buf); !isTimeout(err) {
			t.Fatalf("read on a quiet stream: %v, want a timeout", err)
		}
	}
	b.want = time.Now().Add(50 * time.Millisecond)
	start = time.Now()
	if _, err := b.Read(buf); !isTimeout(err) {
		t.Fatalf("read on a quiet stream: %v, want a timeout", err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("idle wait ended after %v, before the caller's deadline", d)
	}
}

// The caller's deadline bounds a wait, and an interrupt ends it at once.
func TestBatchReaderDeadlineAndInterrupt(t *testing.T) {
	client, _ := tcpPair(t)
	b, intr := streamingReader(t, client)
	buf := make([]byte, 16)
	b.want = time.Now().Add(20 * time.Millisecond)
	if _, err := b.Read(buf); !isTimeout(err) {
		t.Fatalf("got %v, want a timeout", err)
	}
	b.want = time.Now().Add(time.Minute)
	// Interrupt once the read has got past the flag check to the socket.
	reading := make(chan struct{}, 1)
	b.r = signalReader{client, reading}
	go func() {
		<-reading
		intr.Store(true)
		_ = client.SetReadDeadline(time.Now())
	}()
	start := time.Now()
	if _, err := b.Read(buf); !isTimeout(err) {
		t.Fatalf("got %v, want a timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("interrupt took %v", d)
	}
	// Once interrupted, reads return at once without touching the socket.
	if _, err := b.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want os.ErrDeadlineExceeded", err)
	}
	select {
	case <-reading:
		t.Fatal("an interrupted reader read the socket")
	default:
	}
}

// signalReader signals each read before it starts.
type signalReader struct {
	io.Reader
	reading chan<- struct{}
}

func (r signalReader) Read(p []byte) (int, error) {
	select {
	case r.reading <- struct{}{}:
	default:
	}
	return r.Reader.Read(p)
}

// Before streaming starts the reader only passes reads through.
func TestBatchReaderPassThrough(t *testing.T) {
	b := &batchReader{r: bytes.NewReader([]byte("hello"))}
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "hello" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// Inside a large transaction, a sender that writes as fast as it can
// saturates the stream: the mark rises to saturatedBytes, a read then waits
// at most saturatedWait, and once the sender stops the mark comes down
// again. Outside one, or from a distant source, it never saturates; a
// trickle saturates at most a few reads (one burst read after a stall).
func TestBatchReaderSaturated(t *testing.T) {
	// Outside a large transaction the same stream never saturates.
	if reads := saturatedReads(t, false, nil); reads != 0 {
		t.Fatalf("%d saturated reads outside a large transaction", reads)
	}
	if saturatedReads(t, true, nil) == 0 {
		t.Fatal("a sender writing as fast as it can never saturated the stream")
	}
	// Nor does it from a source 20 ms away (the raised mark would clamp
	// the receive window, and with it the stream, to 256 KiB per round
	// trip).
	far := func() (time.Duration, bool) { return 20 * time.Millisecond, true }
	if reads := saturatedReads(t, true, far); reads != 0 {
		t.Fatalf("%d saturated reads from a source 20 ms away", reads)
	}

	// A trickle (~0.5 MB/s in 512-byte writes) is not saturated: a reader
	// that stalled on a loaded machine may read a burst that makes one
	// window count, but the next window ends it.
	client, server := tcpPair(t)
	b, _ := streamingReader(t, client)
	b.bulk = true
	buf := make([]byte, 8192)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 400 {
			if _, err := server.Write(make([]byte, 512)); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	reads, satReads := 0, 0
	for total := 0; total < 400*512; {
		b.want = time.Now().Add(time.Minute)
		n, err := b.Read(buf)
		total += n
		if err != nil && !isTimeout(err) {
			t.Fatal(err)
		}
		reads++
		if b.lowat == saturatedBytes {
			satReads++
		}
	}
	<-done
	if satReads*10 > reads {
		t.Fatalf("a trickle was saturated after %d of %d reads", satReads, reads)
	}
}

// saturatedReads streams 16 MiB in message-sized writes as fast as the
// sender can, through a reader told the stream is (or is not) inside a
// large transaction, with rtt as the link's round trip (nil: the
// socket's), checks it arrives intact, and counts the reads made while
// saturated. It leaves the reader with the sender stopped.
func saturatedReads(t *testing.T, bulk bool, rtt func() (time.Duration, bool)) int {
	t.Helper()
	client, server := tcpPair(t)
	b, _ := streamingReader(t, client)
	b.bulk, b.rtt = bulk, rtt
	want := sendMessages(server, 3, 100)
	got := make([]byte, 0, len(want))
	buf := make([]byte, 8192)
	count := 0
	for len(got) < len(want) {
		b.want = time.Now().Add(time.Minute)
		saturated := b.lowat == saturatedBytes
		n, err := b.Read(buf)
		end := time.Now()
		got = append(got, buf[:n]...)
		if err != nil && !isTimeout(err) {
			t.Fatal(err)
		}
		if saturated {
			count++
			// The caller's deadline is a minute away: a saturated read
			// waits at most saturatedWait for the mark.
			if b.armed.After(end.Add(saturatedWait)) {
				t.Fatalf("a saturated read armed a deadline %v ahead, want at most %v", b.armed.Sub(end), saturatedWait)
			}
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatal("stream corrupted")
	}
	if count > 0 {
		stopped(t, b)
	}
	return count
}

// stopped checks that once the sender has stopped, saturated reads time
// out within saturatedWait and the rate windows end saturation.
func stopped(t *testing.T, b *batchReader) {
	t.Helper()
	buf := make([]byte, 8192)
	for start := time.Now(); b.lowat == saturatedBytes; {
		b.want = time.Now().Add(time.Minute)
		if _, err := b.Read(buf); !isTimeout(err) {
			t.Fatalf("read on a stopped stream: %v, want a timeout", err)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the mark stayed at saturatedBytes on a stopped stream")
		}
	}
}

// The reader learns the link's round trip from the kernel (TCP_INFO).
func TestBatchReaderReadsRTT(t *testing.T) {
	client, _ := tcpPair(t)
	b, _ := streamingReader(t, client)
	rtt, ok := b.rttNow()
	if runtime.GOOS != "linux" {
		t.Skip("TCP_INFO is read on Linux only")
	}
	if !ok || rtt > time.Second {
		t.Fatalf("loopback RTT %v (ok %v), want a small RTT", rtt, ok)
	}
}

// sendMessages writes 16 MiB of random bytes (seeded by seed) to conn in
// writes of size to 2×size bytes (pgoutput messages), as fast as it can,
// from a goroutine, and returns them.
func sendMessages(conn net.Conn, seed uint64, size int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	data := make([]byte, 16<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	go func() {
		for rest := data; len(rest) > 0; {
			n := min(len(rest), size+rng.IntN(size))
			if _, err := conn.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
	}()
	return data
}
