// Package kafkatest starts an in-process Kafka cluster (franz-go's kfake:
// the real Kafka protocol, transactions and read_committed included) on
// loopback ports for tests, and reads topics back the way a consumer would.
//
// The cluster lives in the test process, so it outlives cdcd processes the
// test starts and kills.
package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Options configures a cluster. The zero value means every default.
type Options struct {
	// Brokers is the number of brokers. Default 3.
	Brokers int
	// Partitions is the default partition count of new topics. Default 4.
	Partitions int
	// Extra are more kfake options.
	Extra []kfake.Opt
}

// Cluster is a running kfake cluster.
type Cluster struct {
	*kfake.Cluster
	addrs []string
}

// Start starts a cluster on free loopback ports, closed when the test ends.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Brokers <= 0 {
		o.Brokers = 3
	}
	if o.Partitions <= 0 {
		o.Partitions = 4
	}
	ports := make([]int, o.Brokers)
	for i := range ports {
		ports[i] = freePort(t)
	}
	opts := append([]kfake.Opt{kfake.Ports(ports...), kfake.DefaultNumPartitions(o.Partitions)}, o.Extra...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return &Cluster{Cluster: c, addrs: c.ListenAddrs()}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addrs are the brokers' host:port addresses.
func (c *Cluster) Addrs() []string { return c.addrs }

// ReadCommitted reads every record of the topics visible to a
// read_committed consumer, up to the last stable offsets as of the call, in
// partition order.
func (c *Cluster) ReadCommitted(ctx context.Context, topics ...string) ([]*kgo.Record, error) {
	return ReadCommitted(ctx, c.addrs, topics...)
}

// ReadCommitted reads topics from any cluster; see Cluster.ReadCommitted.
func ReadCommitted(ctx context.Context, brokers []string, topics ...string) ([]*kgo.Record, error) {
	return read(ctx, brokers, true, topics)
}

// ReadUncommitted reads every record of the topics, aborted transactions'
// included, up to the high watermarks as of the call.
func (c *Cluster) ReadUncommitted(ctx context.Context, topics ...string) ([]*kgo.Record, error) {
	return read(ctx, c.addrs, false, topics)
}

func read(ctx context.Context, brokers []string, committed bool, topics []string) ([]*kgo.Record, error) {
	admCl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	adm := kadm.NewClient(admCl)
	list, level := adm.ListEndOffsets, kgo.ReadUncommitted()
	if committed {
		list, level = adm.ListCommittedOffsets, kgo.ReadCommitted()
	}
	ends, err := list(ctx, topics...)
	admCl.Close()
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	want := map[string]map[int32]int64{}
	offsets := map[string]map[int32]kgo.Offset{}
	for t, ps := range ends {
		for p, o := range ps {
			if o.Err != nil {
				return nil, fmt.Errorf("end offset %s[%d]: %w", t, p, o.Err)
			}
			if o.Offset <= 0 {
				continue
			}
			if want[t] == nil {
				want[t], offsets[t] = map[int32]int64{}, map[int32]kgo.Offset{}
			}
			want[t][p] = o.Offset
			offsets[t][p] = kgo.NewOffset().AtStart()
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(offsets),
		kgo.FetchIsolationLevel(level), kgo.KeepControlRecords(), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return out, fmt.Errorf("read committed: still waiting for %v: %w", want, ctx.Err())
		}
		for _, fe := range fs.Errors() {
			return out, fmt.Errorf("fetch %s[%d]: %w", fe.Topic, fe.Partition, fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Topic][r.Partition]; ok && r.Offset+1 >= end {
				delete(want[r.Topic], r.Partition)
				if len(want[r.Topic]) == 0 {
					delete(want, r.Topic)
				}
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
	return out, nil
}

// KcatLine is one record as printed by kcat.
type KcatLine struct {
	Partition int32
	Offset    int64
	Key       string
	Value     string
}

// Kcat reads a topic with kcat (an independent librdkafka client) in
// read_committed isolation, to the end of every partition.
func Kcat(ctx context.Context, brokers []string, topic string) ([]KcatLine, error) {
	if _, err := exec.LookPath("kcat"); err != nil {
		return nil, errors.New("kcat is not installed (scripts/deps.sh installs it)")
	}
	cmd := exec.CommandContext(ctx, "kcat", "-b", strings.Join(brokers, ","), "-C", "-t", topic, "-e", "-q",
		"-X", "isolation.level=read_committed", "-f", "%p\t%o\t%k\t%s\n")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("kcat: %w: %s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("kcat: %w", err)
	}
	var lines []KcatLine
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if l == "" {
			continue
		}
		f := strings.SplitN(l, "\t", 4)
		if len(f) != 4 {
			return nil, fmt.Errorf("kcat: unexpected line %q", l)
		}
		var kl KcatLine
		if _, err := fmt.Sscan(f[0], &kl.Partition); err != nil {
			return nil, fmt.Errorf("kcat: line %q: %w", l, err)
		}
		if _, err := fmt.Sscan(f[1], &kl.Offset); err != nil {
			return nil, fmt.Errorf("kcat: line %q: %w", l, err)
		}
		kl.Key, kl.Value = f[2], f[3]
		lines = append(lines, kl)
	}
	return lines, nil
}
