// Command cdcd-demo runs cdcd end to end on throwaway PostgreSQL 17 servers:
// a primary A, its physical standby B where cdcd decodes, and a target C
// (with -sink dynamodb: dynalite, DynamoDB's API); then it checks that the
// target equals A. `make demo` runs it (DEMO_FLAGS="-sink dynamodb").
//
// Exit status 0 means the target matched A; 1 means it did not or the demo failed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/cdcd-io/cdcd/internal/demo"
)

func main() {
	var opts demo.Options
	flag.DurationVar(&opts.Duration, "duration", 0, "how long the write workload runs on A (default 20s)")
	flag.IntVar(&opts.Writers, "writers", 0, "concurrent writing sessions on A (default 4)")
	flag.IntVar(&opts.Rate, "rate", 0, "cap on commits per second on A, all sessions together (default 500; -1: no cap)")
	flag.StringVar(&opts.Sink, "sink", "postgres", "the target: postgres (server C) or dynamodb (dynalite, DynamoDB's API)")
	flag.BoolVar(&opts.Keep, "keep", false, "after the check, keep the servers and cdcd running and print the DSNs; stop with Ctrl-C")
	flag.Parse()
	if fd := int(os.Stdout.Fd()); term.IsTerminal(fd) {
		opts.Live = true
		opts.Width, _, _ = term.GetSize(fd)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := demo.Run(ctx, opts, os.Stdout)
	switch {
	case err == nil:
		return
	case errors.Is(err, demo.ErrMismatch):
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		fmt.Fprintln(os.Stderr, "cdcd-demo: interrupted")
	default:
		fmt.Fprintln(os.Stderr, "cdcd-demo:", err)
	}
	stop()
	os.Exit(1)
}
