package pipeline_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/apply"
	"github.com/cdcd-io/cdcd/pkg/capture"
	"github.com/cdcd-io/cdcd/pkg/mapping"
	"github.com/cdcd-io/cdcd/pkg/pipeline"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/sink/stdout"
	"github.com/cdcd-io/cdcd/pkg/source/postgres"
)

// TestNewReturnsEveryWiringError: each wiring step that cannot be done is
// an error from New, never a silently skipped decorator or snapshot.
func TestNewReturnsEveryWiringError(t *testing.T) {
	open := func(context.Context) (sink.Sink, error) { return stdout.New(nil), nil }
	base := func() pipeline.Config {
		return pipeline.Config{
			Capture: capture.Config{Source: postgres.Config{DSN: "postgres://x@127.0.0.1:1/db"}, TrailDir: t.TempDir()},
			Sinks:   []pipeline.Sink{{Apply: apply.Config{Name: "s"}, Open: open}},
		}
	}
	_, err := pipeline.New(base())
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		edit func(*pipeline.Config)
		want string
	}{
		{"bad table pattern", func(c *pipeline.Config) { c.Tables = mapping.Config{Include: []string{"public.["}} }, "tables:"},
		{"mapping of an unqualified table", func(c *pipeline.Config) { c.Tables = mapping.Config{Tables: []mapping.Table{{From: "orders"}}} }, "tables:"},
		{"bad snapshot mode", func(c *pipeline.Config) { c.Snapshot.Mode = "sometimes" }, `sink "s": snapshot.mode "sometimes"`},
		{"no sinks", func(c *pipeline.Config) { c.Sinks = nil }, "no sink configured"},
		{"unnamed sink", func(c *pipeline.Config) { c.Sinks[0].Apply.Name = "" }, "a sink has no name"},
		{"no opener", func(c *pipeline.Config) { c.Sinks[0].Open = nil }, `sink "s": Open is required`},
		{"duplicate name", func(c *pipeline.Config) { c.Sinks = append(c.Sinks, c.Sinks[0]) }, `sink name "s" is used twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.edit(&c)
			_, err := pipeline.New(c)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
