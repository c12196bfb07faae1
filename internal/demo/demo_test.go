package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestRun is the end-to-end test of decoding on a standby and applying to a
// target: the whole demo with a short workload, which must end with C equal
// to A.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three PostgreSQL servers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, Options{Duration: 3 * time.Second}, &out)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, want := range []string{"✓ C matches A", "servers stopped and removed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestStatusLine(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	prev := sample{at: start.Add(10 * time.Second), commits: 1000, rows: 5000}
	cur := sample{
		at: start.Add(12 * time.Second), commits: 1800, changes: 12345, rows: 9000,
		sourceLSN: 0x1_0000_3000, appliedLSN: 0x1_0000_0000, lastCommit: start.Add(11500 * time.Millisecond),
	}
	got := statusLine(start, prev, cur)
	want := " 12s  A 400 commits/s → captured 12,345 → C 9,000 rows, 2,000/s │ lag 12.3 kB, 0.5s"
	if got != want {
		t.Errorf("statusLine =\n%q, want\n%q", got, want)
	}
	cur.caughtUp = true
	if got := statusLine(start, prev, cur); !strings.HasSuffix(got, "lag 0 B, 0.0s") {
		t.Errorf("caught up: statusLine = %q", got)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestFit(t *testing.T) {
	for _, tc := range []struct {
		line  string
		width int
		want  string
	}{
		{"A → C", 0, "A → C"},
		{"A → C", 5, "A → C"},
		{"A → C", 4, "A →…"},
	} {
		if got := fit(tc.line, tc.width); got != tc.want {
			t.Errorf("fit(%q, %d) = %q, want %q", tc.line, tc.width, got, tc.want)
		}
	}
}

// TestRunDynamoDB is the demo with -sink dynamodb: A → B → cdcd → dynalite,
// ending with every DynamoDB table equal to A's.
func TestRunDynamoDB(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two PostgreSQL servers and dynalite")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, Options{Duration: 3 * time.Second, Sink: SinkDynamoDB}, &out)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, want := range []string{"✓ DynamoDB matches A", "servers stopped and removed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
