// Command benchmarks measures cdcd against the tools a user would otherwise
// pick, in the same run on the same machine, and writes the figures as JSON,
// a Markdown table and PNG charts under benchmarks/results.
//
//	go run ./benchmarks -size ci     # make bench-ci: reduced sizes, a few minutes
//	go run ./benchmarks -size full   # make bench: the sizes quoted in the README
//
// Every scenario starts its own throwaway PostgreSQL servers (internal/pgtest),
// runs cdcd as a separate process (the binary is built first, so its peak RSS
// is cdcd's alone) and its reference alternately, -reps times, and reports
// medians and the ratio reference-time / cdcd-time (> 1: cdcd is faster).
// With -floors, the run fails when a ratio falls below its floor.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	log.SetFlags(log.Ltime)
	var (
		size   = flag.String("size", "ci", "ci (reduced, a few minutes) or full")
		only   = flag.String("only", "", "comma-separated scenarios to run (default all): "+strings.Join(scenarioNames(), ","))
		out    = flag.String("out", "benchmarks/results", "directory for results JSON, Markdown and charts")
		floors = flag.String("floors", "", "YAML file of ratio floors; the run fails when a ratio is below its floor")
		reps   = flag.Int("reps", 0, "repetitions per scenario (default 3 full, 3 ci)")
		prof   = flag.String("cpuprofile", "", "directory for CPU profiles of every cdcd process")
		tl     = flag.String("timeline", "", "directory for a timeline of each timed apply run: CPU per side and wait events every 250ms")
		memory = flag.String("memory-rows", "", "override the memory scenario's transaction sizes, e.g. 1000000,5000000")
		load   = flag.Int("load", 0, "busy loops to run beside the benchmark, for figures under CPU contention (noted in the results)")
		fsync  = flag.String("fsync", "on", "fsync of the apply scenario's servers: on (the headline ratios), off (keys suffixed .fsync-off), or both")
	)
	flag.Parse()
	sz, ok := sizes[*size]
	if !ok {
		log.Fatalf("-size %q: use ci or full", *size)
	}
	if *reps > 0 {
		sz.Reps = *reps
	}
	if *memory != "" {
		sz.MemoryRows = nil
		for f := range strings.SplitSeq(*memory, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				log.Fatalf("-memory-rows %q: want comma-separated row counts", *memory)
			}
			sz.MemoryRows = append(sz.MemoryRows, n)
		}
	}
	switch *fsync {
	case "on", "off":
		sz.Fsync = []string{*fsync}
	case "both":
		sz.Fsync = []string{"on", "off"}
	default:
		log.Fatalf("-fsync %q: use on, off or both", *fsync)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, sz, *only, *out, *floors, *prof, *tl, *load); err != nil {
		log.Fatalf("benchmarks: %v", err)
	}
}

func run(ctx context.Context, sz Sizes, only, out, floorsPath, profile, timeline string, load int) error {
	var fl Floors
	if floorsPath != "" {
		var err error
		if fl, err = loadFloors(floorsPath); err != nil {
			return err
		}
	}
	work, err := os.MkdirTemp("", "cdcd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "cdcd")
	log.Printf("building cdcd")
	if b, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/cdcd").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/cdcd: %v\n%s", err, b)
	}
	for _, dir := range []*string{&profile, &timeline} {
		if *dir == "" {
			continue
		}
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			return err
		}
		if *dir, err = filepath.Abs(*dir); err != nil {
			return err
		}
	}
	e := &Env{Bin: bin, Work: work, Size: sz, Profile: profile, Timeline: timeline}
	res := &Results{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Size:    sz.Name,
		Machine: describeMachine(),
	}
	if load > 0 {
		stop, err := startLoad(load)
		if err != nil {
			return err
		}
		defer stop()
		res.Notes = append(res.Notes, fmt.Sprintf("measured beside %d busy loops (-load %d)", load, load))
	}
	want := map[string]bool{}
	for n := range strings.SplitSeq(only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			if !slices.Contains(scenarioNames(), n) {
				return fmt.Errorf("-only %q: unknown scenario (have %s)", n, strings.Join(scenarioNames(), ", "))
			}
			want[n] = true
		}
	}
	for _, s := range scenarios {
		if len(want) > 0 && !want[s.name] {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Printf("== %s", s.name)
		res.Scenarios = append(res.Scenarios, s.name)
		t0 := time.Now()
		if err := s.run(ctx, e, res); err != nil {
			return fmt.Errorf("scenario %s: %w", s.name, err)
		}
		log.Printf("== %s done in %v", s.name, time.Since(t0).Round(time.Second))
	}
	if err := res.write(out); err != nil {
		return err
	}
	fmt.Println(res.markdown())
	if floorsPath != "" {
		if failed := fl.check(res); len(failed) > 0 {
			return fmt.Errorf("ratios below the floors in %s:\n  %s", floorsPath, strings.Join(failed, "\n  "))
		}
		log.Printf("every ratio is at or above its floor in %s", floorsPath)
	}
	return nil
}

type scenario struct {
	name string
	run  func(context.Context, *Env, *Results) error
}

// scenarios run in this order.
var scenarios = []scenario{
	{"capture", benchCapture},
	{"apply", benchApply},
	{"snapshot", benchSnapshot},
	{"latency", benchLatency},
	{"memory", benchMemory},
	{"streaming", benchStreaming},
	{"kafka", benchKafka},
	{"dynamodb", benchDynamoDB},
	{"trigger.cost", benchTriggerCost},
	{"trigger.capture", benchTriggerCapture},
	{"verify", benchVerify},
	{"cutover", benchCutover},
}

func scenarioNames() []string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return n
}

// Sizes are the workload sizes of one run.
type Sizes struct {
	Name         string
	Reps         int
	CaptureRows  int           // rows captured, in CaptureTxRows-row transactions
	CaptureTx    int           // rows per transaction
	BigTxRows    int           // one insert / one update transaction
	Backlog      int           // single-row transactions
	PgbenchTime  time.Duration // pgbench mix duration
	PgbenchScale int
	MemoryRows   []int // one transaction of each size
	StreamRows   int   // one transaction, streaming on vs off
	LatencyRate  int   // transactions/s
	LatencyTime  time.Duration
	KafkaRows    int
	SnapshotRows int
	// dynamodb: rows of the snapshot and of the live stream (dynalite).
	DynamoDBSnapshotRows int
	DynamoDBStreamRows   int
	// trigger.cost: pgbench -c 2 -j 2 -T TriggerPgbenchTime on this scale.
	TriggerPgbenchScale int
	TriggerPgbenchTime  time.Duration
	// Fsync lists the fsync settings ("on", "off") the apply scenario runs
	// its servers with, one full pass each (-fsync). Default on.
	Fsync []string
}

var sizes = map[string]Sizes{
	"ci": {Name: "ci", Reps: 3, CaptureRows: 200000, CaptureTx: 100, BigTxRows: 200000, Backlog: 50000,
		PgbenchTime: 15 * time.Second, PgbenchScale: 5, MemoryRows: []int{100000, 500000}, StreamRows: 1000000,
		LatencyRate: 200, LatencyTime: 10 * time.Second, KafkaRows: 300000, SnapshotRows: 1000000,
		TriggerPgbenchScale: 1, TriggerPgbenchTime: 10 * time.Second,
		DynamoDBSnapshotRows: 40000, DynamoDBStreamRows: 20000},
	"full": {Name: "full", Reps: 3, CaptureRows: 1000000, CaptureTx: 100, BigTxRows: 1000000, Backlog: 200000,
		PgbenchTime: 60 * time.Second, PgbenchScale: 20, MemoryRows: []int{1000000, 5000000, 10000000}, StreamRows: 5000000,
		LatencyRate: 500, LatencyTime: 30 * time.Second, KafkaRows: 1000000, SnapshotRows: 5000000,
		TriggerPgbenchScale: 10, TriggerPgbenchTime: 60 * time.Second,
		DynamoDBSnapshotRows: 1000000, DynamoDBStreamRows: 1000000},
}

// Env is what scenarios share.
type Env struct {
	Bin  string // the cdcd binary
	Work string // scratch directory, removed at the end
	Size Sizes
	// Profile, when set, is a directory for a CPU profile of every cdcd
	// process (go tool pprof -top cdcd PROFILE).
	Profile  string
	profiles int
	// Timeline, when set, is a directory for a timeline of each timed
	// apply run (see watch).
	Timeline  string
	timelines int
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, Go: runtime.Version()}
	m.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.SplitSeq(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if _, v, ok := strings.Cut(l, ":"); ok {
					m.CPU = strings.TrimSpace(v)
					break
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb uint64
		fmt.Sscanf(string(b), "MemTotal: %d kB", &kb)
		m.MemoryMiB = kb / 1024
	}
	return m
}
