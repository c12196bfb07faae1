package dynalitetest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

func TestStartAnswers(t *testing.T) {
	s := StartT(t)
	out, err := s.Client().ListTables(context.Background(), &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatalf("ListTables: %v", err)
	}
	if len(out.TableNames) != 0 {
		t.Fatalf("a new server has tables: %v", out.TableNames)
	}
}

// TestSurvivesAbortedRequest: a client that dies mid-request (cdcd under
// kill -9) must not take the server down with it. Each request asks for
// "100 Continue", so once that arrives the server is reading the body when
// the connection is reset; the guard then logs the aborted request, and the
// test waits for that line (or for the server's exit) instead of a delay.
func TestSurvivesAbortedRequest(t *testing.T) {
	s := StartT(t)
	addr := strings.TrimPrefix(s.Endpoint, "http://")
	for i := 1; i <= 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-amz-json-1.0\r\n"+
			"X-Amz-Target: DynamoDB_20120810.ListTables\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n", addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.Contains(line, " 100 ") {
			t.Fatalf("waiting for 100 Continue: %q, %v", line, err)
		}
		// Promise a body longer than what is sent, then reset the connection.
		if _, err := io.WriteString(c, `{"Lim`); err != nil {
			t.Fatal(err)
		}
		if err := c.(*net.TCPConn).SetLinger(0); err != nil {
			t.Fatal(err)
		}
		c.Close()
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(s.log.String(), "client aborted a request") < i {
			if err := s.Exited(); err != nil {
				t.Fatalf("dynalite exited after a client aborted a request: %v\n%s", err, s.log.String())
			}
			if time.Now().After(deadline) {
				t.Fatalf("aborted request %d not seen by the server within 30 s; its output:\n%s", i, s.log.String())
			}
			time.Sleep(10 * time.Millisecond) // poll interval
		}
	}
	if _, err := s.Client().ListTables(context.Background(), &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("ListTables after aborted requests: %v", err)
	}
}
