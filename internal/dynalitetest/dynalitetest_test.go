package dynalitetest

import (
	"context"
	"fmt"
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
// kill -9) must not take the server down with it.
func TestSurvivesAbortedRequest(t *testing.T) {
	s := StartT(t)
	addr := strings.TrimPrefix(s.Endpoint, "http://")
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		// Promise a body longer than what is sent, then reset the connection.
		_, err = fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-amz-json-1.0\r\n"+
			"X-Amz-Target: DynamoDB_20120810.ListTables\r\nContent-Length: 1000\r\n\r\n{\"Lim", addr)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // let the server start reading the body
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	time.Sleep(200 * time.Millisecond)
	if err := s.Exited(); err != nil {
		t.Fatalf("dynalite exited after a client aborted a request: %v\n%s", err, s.log.String())
	}
	if _, err := s.Client().ListTables(context.Background(), &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("ListTables after aborted requests: %v", err)
	}
}
