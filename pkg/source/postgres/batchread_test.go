package postgres

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
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
