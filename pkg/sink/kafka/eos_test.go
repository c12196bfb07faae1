package kafka_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cdcd-io/cdcd/internal/kafkatest"
	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/config"
	"github.com/cdcd-io/cdcd/pkg/pipeline"
)

const accounts = 20

// workload commits, until stopped, transactions that insert the next
// numbered rows (n = 1, 2, 3, …) and increment 1–3 random accounts by one.
type workload struct {
	pg        *pgtest.Cluster
	committed atomic.Int64
	stop      context.CancelFunc
	done      chan error
}

func setupWorkload(t testing.TB, pg *pgtest.Cluster) {
	pg.ExecT(t, "postgres",
		`CREATE TABLE numbered (n int PRIMARY KEY, pad text)`,
		`CREATE TABLE acct (id int PRIMARY KEY, v int NOT NULL)`)
}

func startWorkload(t testing.TB, pg *pgtest.Cluster) *workload {
	t.Helper()
	pg.ExecT(t, "postgres", fmt.Sprintf(`INSERT INTO acct SELECT g, 0 FROM generate_series(1, %d) g`, accounts))
	ctx, cancel := context.WithCancel(context.Background())
	w := &workload{pg: pg, stop: cancel, done: make(chan error, 1)}
	go func() {
		w.done <- func() error {
			conn, err := pgx.Connect(context.Background(), pg.DSN("postgres"))
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			n := int64(0)
			for ctx.Err() == nil {
				k := int64(1 + rand.IntN(5))
				b := &pgx.Batch{}
				b.Queue(`INSERT INTO numbered SELECT g, repeat('p', 50) FROM generate_series($1::int, $2::int) g`, n+1, n+k)
				for range 1 + rand.IntN(3) {
					b.Queue(`UPDATE acct SET v = v + 1 WHERE id = $1`, 1+rand.IntN(accounts))
				}
				tx, err := conn.Begin(context.Background())
				if err != nil {
					return err
				}
				if err := tx.SendBatch(context.Background(), b).Close(); err != nil {
					return err
				}
				if err := tx.Commit(context.Background()); err != nil {
					return err
				}
				n += k
				w.committed.Store(n)
				time.Sleep(time.Millisecond)
			}
			return nil
		}()
	}()
	t.Cleanup(func() { cancel(); <-w.done; w.done <- nil })
	return w
}

func (w *workload) finish(t testing.TB) int64 {
	t.Helper()
	w.stop()
	require.NoError(t, <-w.done)
	w.done <- nil
	return w.committed.Load()
}

// verify checks, from what a read_committed consumer and kcat see, that
// every numbered row arrived exactly once and that every account's values
// arrived exactly once and in order (0, 1, 2, … up to its final value).
func verify(t testing.TB, pg *pgtest.Cluster, k *kafkatest.Cluster, total int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	final := map[string]int64{}
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	require.NoError(t, err)
	rows, err := conn.Query(ctx, `SELECT id, v FROM acct`)
	require.NoError(t, err)
	for rows.Next() {
		var id, v int64
		require.NoError(t, rows.Scan(&id, &v))
		final[fmt.Sprintf(`{"id":%d}`, id)] = v
	}
	require.NoError(t, rows.Err())
	conn.Close(ctx)

	type rec struct {
		key   string
		value []byte
	}
	check := func(client string, numbered, acct []rec) {
		seen := make([]int, total+1)
		for _, r := range numbered {
			var e event
			require.NoError(t, json.Unmarshal(r.value, &e), "%s: %s", client, r.value)
			require.Equal(t, "c", e.Op)
			n, err := strconv.ParseInt(fmt.Sprint(e.After["n"]), 10, 64)
			require.NoError(t, err)
			require.LessOrEqual(t, n, total, "%s: row n=%d was never committed", client, n)
			seen[n]++
		}
		for n := int64(1); n <= total; n++ {
			require.Equal(t, 1, seen[n], "%s: numbered row %d seen %d times", client, n, seen[n])
		}
		perKey := map[string][]int64{}
		for _, r := range acct {
			var e event
			require.NoError(t, json.Unmarshal(r.value, &e), "%s: %s", client, r.value)
			v, err := strconv.ParseInt(fmt.Sprint(e.After["v"]), 10, 64)
			require.NoError(t, err)
			perKey[r.key] = append(perKey[r.key], v)
		}
		require.Len(t, perKey, accounts, client)
		for key, vs := range perKey {
			want := make([]int64, final[key]+1)
			for i := range want {
				want[i] = int64(i)
			}
			require.Equal(t, want, vs, "%s: account %s: every value once, in order", client, key)
		}
		t.Logf("%s: %d numbered rows exactly once; %d account events exactly once in per-key order", client, total, len(acct))
	}

	fromKgo := func(topic string) []rec {
		recs, err := k.ReadCommitted(ctx, topic)
		require.NoError(t, err)
		out := make([]rec, len(recs))
		for i, r := range recs {
			out[i] = rec{string(r.Key), r.Value}
		}
		return out
	}
	check("franz-go read_committed", fromKgo("cdc.public.numbered"), fromKgo("cdc.public.acct"))

	fromKcat := func(topic string) []rec {
		lines, err := kafkatest.Kcat(ctx, k.Addrs(), topic)
		require.NoError(t, err)
		out := make([]rec, len(lines))
		for i, l := range lines {
			out[i] = rec{l.Key, []byte(l.Value)}
		}
		return out
	}
	check("kcat read_committed", fromKcat("cdc.public.numbered"), fromKcat("cdc.public.acct"))
}

// checkpointPast reports whether the sink's committed checkpoint is past l.
func checkpointPast(t testing.TB, k *kafkatest.Cluster, l change.LSN) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs, err := k.ReadCommitted(ctx, "cdcd.checkpoints")
	if err != nil || len(recs) == 0 {
		return false
	}
	var cp struct {
		EndLSN string `json:"end_lsn"`
	}
	require.NoError(t, json.Unmarshal(recs[len(recs)-1].Value, &cp))
	got, err := change.ParseLSN(cp.EndLSN)
	require.NoError(t, err)
	return got > l
}

// TestExactlyOnceKill9 SIGKILLs `cdcd run` repeatedly while a workload
// commits; the kfake cluster lives in the test process and outlives every
// cdcd. Afterwards read_committed consumers — franz-go and kcat — see every
// change exactly once, in order per key.
func TestExactlyOnceKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the cdcd binary")
	}
	pg := pgtest.StartT(t, pgtest.Options{})
	k := kafkatest.Start(t, kafkatest.Options{})
	setupWorkload(t, pg)
	bin := buildCdcd(t)
	cfg := filepath.Join(t.TempDir(), "cdcd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(yamlConfig(pg, k, t.TempDir(), "compression: zstd")), 0o600))
	logPath := filepath.Join(t.TempDir(), "cdcd.log")
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", cfg)
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = f, f
		require.NoError(t, cmd.Start())
		return cmd
	}
	first := start()
	waitSlot(t, pg)
	w := startWorkload(t, pg)
	_ = first.Process.Signal(syscall.SIGKILL)
	_ = first.Wait()
	for i := range 8 {
		cmd := start()
		// Not a synchronisation: the kill lands at a random instant of
		// start-up, catch-up or streaming, which is the point of the test.
		time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		t.Logf("kill %d: %d rows committed so far", i+1, w.committed.Load())
	}
	total := w.finish(t)
	m := marker(t, pg)
	cmd := start()
	// checkpointPast may fail the test, so it is polled here, on the test's
	// goroutine, rather than in require.Eventually's.
	for deadline := time.Now().Add(2 * time.Minute); !checkpointPast(t, k, m); {
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logPath)
			t.Fatalf("sink did not catch up; cdcd log:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond) // poll interval
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "clean stop exits 0")
	verify(t, pg, k, total)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	all, err := k.ReadUncommitted(ctx, "cdc.public.numbered")
	require.NoError(t, err)
	t.Logf("read_uncommitted sees %d numbered records: %d from transactions the kills aborted, hidden from read_committed",
		len(all), int64(len(all))-total)
}

// startFaultPipeline runs a workload source into a Kafka sink with short
// apply backoffs, in-process, until stop (or the test's end); logs collects
// its log. stop drains the pipeline and returns Run's error.
func startFaultPipeline(t *testing.T) (pg *pgtest.Cluster, k *kafkatest.Cluster, p *pipeline.Pipeline, logs *syncBuffer, stop func() error) {
	t.Helper()
	pg = pgtest.StartT(t, pgtest.Options{})
	k = kafkatest.Start(t, kafkatest.Options{})
	setupWorkload(t, pg)
	logs = &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f, err := config.Parse([]byte(yamlConfig(pg, k, t.TempDir(), "")))
	require.NoError(t, err)
	pc := f.PipelineConfig(log)
	pc.Sinks[0].Apply.MinBackoff = 50 * time.Millisecond
	pc.Sinks[0].Apply.MaxBackoff = time.Second
	p, err = pipeline.New(pc)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	waitSlot(t, pg)
	return pg, k, p, logs, stop
}

// TestBrokerFaults injects faults with kfake's control hooks while a
// workload runs through an in-process pipeline: a failed produce, a commit
// whose connection dies (outcome unknown), a commit the broker applied but
// answered with a timeout, and every broker unreachable for a while. No loss,
// no duplicates, and the logs say what happened.
func TestBrokerFaults(t *testing.T) {
	pg, k, p, logs, stop := startFaultPipeline(t)
	w := startWorkload(t, pg)
	waitApplied(t, p)

	retries := func() uint64 { return p.Workers()[0].Stats().Retries }
	waitRetry := func(what string, before uint64) {
		require.Eventually(t, func() bool { return retries() > before }, 30*time.Second, 20*time.Millisecond,
			"%s: the sink never retried", what)
		t.Logf("%s: sink retried (%d retries so far)", what, retries())
	}

	// 1. A produce fails with a non-retriable error.
	r0 := retries()
	failOneProduce(k)
	waitRetry("failed produce", r0)

	// 2. The connection dies on a commit (kgo retries the EndTxn itself),
	// then a commit is answered UNKNOWN_SERVER_ERROR without being applied:
	// its outcome is unknown to cdcd, which must abort and replay.
	var lostCommit atomic.Bool
	k.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !req.(*kmsg.EndTxnRequest).Commit {
			k.KeepControl()
			return nil, nil, false
		}
		lostCommit.Store(true)
		return nil, fmt.Errorf("injected: connection lost on commit"), true
	})
	require.Eventually(t, lostCommit.Load, 30*time.Second, 10*time.Millisecond, "no commit reached the broker")
	waitApplied(t, p) // a commit after the lost connection
	r0 = retries()
	k.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		er := req.(*kmsg.EndTxnRequest)
		if !er.Commit {
			k.KeepControl()
			return nil, nil, false
		}
		resp := er.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.UnknownServerError.Code
		return resp, nil, true
	})
	waitRetry("commit with unknown outcome", r0)

	// 3. The broker commits but answers with a timeout (kgo retries the
	// commit, or cdcd aborts and replays: either way, no duplicates).
	h := k.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, Err: kerr.RequestTimedOut, Count: -1})
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	require.NoError(t, h.Wait(wctx, 3), "commits answered with a timeout")
	wcancel()
	h.Remove()
	waitApplied(t, p)

	// 4. Every broker unreachable for 3 seconds (the outage's length, not a
	// synchronisation: the control function ends it).
	until := time.Now().Add(3 * time.Second)
	reachable := make(chan struct{})
	k.ControlKey(-1, func(kmsg.Request) (kmsg.Response, error, bool) {
		if time.Now().After(until) {
			k.DropControl()
			close(reachable)
			return nil, nil, false
		}
		k.KeepControl()
		return nil, fmt.Errorf("injected: broker unavailable"), true
	})
	select {
	case <-reachable:
	case <-time.After(time.Minute):
		t.Fatal("no request reached the brokers after the outage")
	}
	waitApplied(t, p) // the sink works again after the outage

	total := w.finish(t)
	waitCaughtUp(t, p, marker(t, pg))
	require.NoError(t, stop())
	verify(t, pg, k, total)
	out := logs.String()
	require.Contains(t, out, "aborting the kafka transaction; apply resumes from the last committed checkpoint")
	require.Contains(t, out, "INVALID_RECORD")
	require.Contains(t, out, "commit kafka transaction (outcome unknown)")
	require.Contains(t, out, "sink failed; retrying from its position")
}

// failOneProduce answers the next produce request with INVALID_RECORD (a
// non-retriable error) on every partition, then lets produces through.
func failOneProduce(k *kafkatest.Cluster) {
	var failedProduce atomic.Bool
	k.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		if failedProduce.Swap(true) {
			return nil, nil, false
		}
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range pr.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.InvalidRecord.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitApplied waits until the pipeline's sink commits a transaction after
// the call.
func waitApplied(t *testing.T, p *pipeline.Pipeline) {
	t.Helper()
	before := p.Workers()[0].Stats().Transactions
	require.Eventually(t, func() bool { return p.Workers()[0].Stats().Transactions > before }, time.Minute, 20*time.Millisecond,
		"the sink committed nothing: %+v", p.Workers()[0].Stats())
}

// waitCaughtUp waits until the pipeline's sink has applied past m.
func waitCaughtUp(t *testing.T, p *pipeline.Pipeline, m change.LSN) {
	t.Helper()
	require.Eventually(t, func() bool { return p.Workers()[0].Stats().Position.EndLSN > m }, 2*time.Minute, 50*time.Millisecond,
		"sink did not catch up")
}

// TestCheckpointStall stalls every fetch of the checkpoint topic (kfake
// answers nothing) while the sink reopens after a failed produce. Reading
// the position must fail with a retriable ErrCheckpointStalled, and apply
// must retry until the stall ends, never resume from a guess: a fallback to
// the checkpoint read so far (none) would re-send the whole trail, which
// verify sees as duplicates.
func TestCheckpointStall(t *testing.T) {
	pg, k, p, logs, stop := startFaultPipeline(t)
	w := startWorkload(t, pg)
	waitApplied(t, p)
	waitApplied(t, p) // several checkpoints committed: a stale one exists to fall back to

	const topic = "cdcd.checkpoints"
	info := k.TopicInfo(topic)
	require.NotNil(t, info, "the sink created its checkpoint topic")
	var stalled atomic.Bool
	var stalledFetches atomic.Int64
	stalled.Store(true)
	k.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !stalled.Load() {
			k.DropControl()
			return nil, nil, false
		}
		k.KeepControl()
		for _, ft := range req.(*kmsg.FetchRequest).Topics {
			if ft.Topic == topic || ft.TopicID == info.TopicID {
				stalledFetches.Add(1)
				return nil, nil, true // no answer: the fetch hangs
			}
		}
		return nil, nil, false
	})

	// A failed produce makes the sink reopen and read its position.
	r0 := p.Workers()[0].Stats().Retries
	failOneProduce(k)
	stallMsg := "kafka sink events: read cdcd.checkpoints: no record for 5s"
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), stallMsg) }, time.Minute, 20*time.Millisecond,
		"the stalled position read never failed")
	require.Greater(t, stalledFetches.Load(), int64(0))
	ws := p.Workers()[0].Stats()
	require.GreaterOrEqual(t, ws.Retries, r0+2, "the failed produce and the stall are both retried")
	require.False(t, ws.Stopped, "a stall is retriable: %s", ws.LastError)
	require.Contains(t, ws.LastError, "stalled before its last stable offset")

	stalled.Store(false)
	waitApplied(t, p)
	total := w.finish(t)
	waitCaughtUp(t, p, marker(t, pg))
	require.NoError(t, stop())
	verify(t, pg, k, total)
	require.Contains(t, logs.String(), "sink failed; retrying from its position")
}
