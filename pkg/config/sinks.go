package config

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/cdcd-io/cdcd/pkg/apply"
	"github.com/cdcd-io/cdcd/pkg/pipeline"
	"github.com/cdcd-io/cdcd/pkg/sink"
	pgsink "github.com/cdcd-io/cdcd/pkg/sink/postgres"
	"github.com/cdcd-io/cdcd/pkg/sink/stdout"
)

// SinkSpec is one entry of the `sinks:` list.
type SinkSpec struct {
	// Name identifies the sink (logs, checkpoints). Required, unique.
	Name string `yaml:"name"`
	// Kind is postgres or stdout. Required.
	Kind string `yaml:"kind"`
	// DSN is the target connection string (postgres).
	DSN string `yaml:"dsn"`
	// CheckpointTable holds the sink's position on the target (postgres).
	// Default cdcd.checkpoint.
	CheckpointTable string `yaml:"checkpoint_table"`
	// IAM enables Aurora/RDS IAM authentication (postgres).
	IAM IAM `yaml:"iam"`
	// Batch bounds apply batches.
	Batch Batch `yaml:"batch"`
}

// IAM is a sink's `iam:` section.
type IAM struct {
	// Region is the AWS region of the database; setting it turns IAM auth on.
	Region string `yaml:"region"`
}

// Batch is a sink's `batch:` section.
type Batch struct {
	// MaxRows closes a batch at this many row changes. Default 10000.
	MaxRows int `yaml:"max_rows"`
	// MaxBytes closes a batch at about this size. Default 16MiB.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// MaxDelay closes a batch this long after it started. Default 100ms.
	MaxDelay Duration `yaml:"max_delay"`
}

// PipelineConfig returns the capture + apply configuration the file
// describes.
func (f *File) PipelineConfig(log *slog.Logger) pipeline.Config {
	cc := f.CaptureConfig()
	cc.Logger = log
	pc := pipeline.Config{Capture: cc, PurgeInterval: time.Duration(f.Trail.PurgeInterval), Logger: log}
	for _, s := range f.Sinks {
		pc.Sinks = append(pc.Sinks, pipeline.Sink{
			Apply: apply.Config{
				Name:     s.Name,
				MaxRows:  s.Batch.MaxRows,
				MaxBytes: int(s.Batch.MaxBytes),
				MaxDelay: time.Duration(s.Batch.MaxDelay),
			},
			Open: opener(s, log),
		})
	}
	return pc
}

func opener(s SinkSpec, log *slog.Logger) apply.OpenFunc {
	switch s.Kind {
	case "postgres":
		cfg := pgsink.Config{
			Name:            s.Name,
			DSN:             s.DSN,
			CheckpointTable: s.CheckpointTable,
			IAM:             pgsink.IAMConfig{Region: s.IAM.Region},
		}
		return func(ctx context.Context) (sink.Sink, error) {
			return pgsink.New(ctx, cfg, log.With("sink", s.Name))
		}
	default:
		return func(context.Context) (sink.Sink, error) { return stdout.New(os.Stdout), nil }
	}
}
