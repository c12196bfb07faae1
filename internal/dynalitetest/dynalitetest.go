// Package dynalitetest starts dynalite — a DynamoDB-API server on Node,
// installed into <repo>/.cache/dynalite by `make deps` — on a free loopback
// port for tests, benchmarks and the demo, and gives SDK clients pointed at
// it.
//
// dynalite keeps its tables in memory, so a server lives as long as the
// process that started it (the test, not the cdcd processes it starts and
// kills). It enforces DynamoDB's item, batch and number rules but never
// throttles or returns UnprocessedItems: inject those with SDK middleware.
package dynalitetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

const (
	modulePath = "github.com/cdcd-io/cdcd"
	cliPath    = ".cache/dynalite/node_modules/dynalite/cli.js"
)

// Region and the static credentials every client of a Server uses
// (dynalite checks neither).
const (
	Region    = "us-east-1"
	AccessKey = "dynalite"
	SecretKey = "dynalite-secret"
)

// Server is a running dynalite.
type Server struct {
	// Endpoint is the server's URL, http://127.0.0.1:port.
	Endpoint string
	cmd      *exec.Cmd
	done     chan error
	log      *syncBuffer
	stdin    io.Closer
}

// syncBuffer is the server's output, written by the process's copier and
// read on failure.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// CLI returns the path of dynalite's cli.js, or an error telling to run
// `make deps`.
func CLI() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, cliPath)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("dynalite not found at %s: run `make deps`", p)
	}
	return p, nil
}

// Start starts dynalite on a free port and waits until it answers. Close
// stops it.
func Start(ctx context.Context) (*Server, error) {
	cli, err := CLI()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // the free port may be taken before node binds it
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), done: make(chan error, 1), log: &syncBuffer{}}
		// dynalite's cli.js, exiting when its stdin closes: when this
		// process ends, however it ends, the server does too. (Pdeathsig
		// would fire when the forking OS thread exits, not the process.)
		// dynalite rethrows a request's stream error, so a client killed
		// mid-request (the kill -9 tests do exactly that) would take the
		// whole server down; DynamoDB just drops that request, and so does
		// the guard. Any other uncaught error still ends the server.
		script := fmt.Sprintf(`process.stdin.on("end", () => process.exit(0)); process.stdin.resume();
process.on("uncaughtException", (err) => {
  if (err && (err.code === "ECONNRESET" || err.message === "aborted")) { console.error("client aborted a request:", err.message); return; }
  console.error(err); process.exit(1);
});
process.argv = [process.argv[0], %q, "--port", "%d", "--host", "127.0.0.1"]; require(%q);`, cli, port, cli)
		s.cmd = exec.Command("node", "-e", script)
		s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
		stdin, err := s.cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		s.stdin = stdin
		if err := s.cmd.Start(); err != nil {
			return nil, fmt.Errorf("start dynalite: %w", err)
		}
		go func() { s.done <- s.cmd.Wait() }()
		if lastErr = s.waitReady(ctx, fmt.Sprintf("127.0.0.1:%d", port)); lastErr == nil {
			return s, nil
		}
		s.Close()
	}
	return nil, lastErr
}

// StartT starts dynalite for a test and stops it when the test ends.
func StartT(t testing.TB) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Start(ctx)
	if err != nil {
		t.Fatalf("dynalitetest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if err := s.Exited(); err != nil {
				t.Logf("dynalite had exited before the test ended (%v); its output:\n%s", err, s.log.String())
			}
		}
		s.Close()
	})
	return s
}

// Exited returns the server's exit error if it has exited, else nil.
func (s *Server) Exited() error {
	select {
	case err := <-s.done:
		s.done <- err
		if err == nil {
			err = errors.New("exit status 0")
		}
		return err
	default:
		return nil
	}
}

func (s *Server) waitReady(ctx context.Context, addr string) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			// Something listens: it must be our dynalite (on a shared
			// machine another process may have taken the port between
			// freePort and node's listen, and node then exits).
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, lerr := s.Client().ListTables(lctx, &dynamodb.ListTablesInput{})
			cancel()
			if lerr == nil && s.Exited() == nil {
				return nil
			}
		}
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("dynalite exited before listening on %s (%v): %s", addr, err, s.log.String())
		case <-ctx.Done():
			return fmt.Errorf("dynalite did not listen on %s: %w", addr, ctx.Err())
		case <-tick.C:
		}
	}
}

// Close stops the server.
func (s *Server) Close() {
	if s.cmd.Process == nil {
		return
	}
	_ = s.stdin.Close()
	_ = s.cmd.Process.Kill()
	<-s.done
	s.done <- errors.New("stopped")
}

// Client returns an SDK client for the server; opts adjust it (e.g. add
// fault-injecting middleware).
func (s *Server) Client(opts ...func(*dynamodb.Options)) *dynamodb.Client {
	cfg := aws.Config{
		Region:      Region,
		Credentials: credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	}
	return dynamodb.NewFromConfig(cfg, append([]func(*dynamodb.Options){func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(s.Endpoint)
	}}, opts...)...)
}

// Env is the environment a cdcd process needs to reach the server with the
// AWS default credential chain.
func Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + AccessKey, "AWS_SECRET_ACCESS_KEY=" + SecretKey, "AWS_REGION=" + Region,
		"AWS_EC2_METADATA_DISABLED=true"}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// repoRoot finds the cdcd repository: walking up from the working
// directory, then from this source file's location.
func repoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
			if err == nil && bytes.Contains(b, []byte("module "+modulePath+"\n")) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("cdcd repository root (go.mod of " + modulePath + ") not found above the working directory")
}
