package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcd-io/cdcd/pkg/apply"
	"github.com/cdcd-io/cdcd/pkg/pipeline"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/sink/kafka"
	pgsink "github.com/cdcd-io/cdcd/pkg/sink/postgres"
	"github.com/cdcd-io/cdcd/pkg/sink/stdout"
)

// SinkSpec is one entry of the `sinks:` list.
type SinkSpec struct {
	// Name identifies the sink (logs, checkpoints). Required, unique.
	Name string `yaml:"name"`
	// Kind is postgres, kafka or stdout. Required.
	Kind string `yaml:"kind"`
	// DSN is the target connection string (postgres).
	DSN string `yaml:"dsn"`
	// Password overrides DSN's password; any bytes (use ${NAME} or
	// ${file:/path}). Default: the DSN's own.
	Password string `yaml:"password"`
	// CheckpointTable holds the sink's position on the target (postgres).
	// Default cdcd.checkpoint.
	CheckpointTable string `yaml:"checkpoint_table"`
	// IAM enables Aurora/RDS IAM authentication (postgres).
	IAM IAM `yaml:"iam"`
	// Batch bounds apply batches.
	Batch Batch `yaml:"batch"`

	// Brokers are the seed brokers, host:port (kafka). Required for kafka.
	Brokers []string `yaml:"brokers"`
	// Topic is the topic template, {schema} and {table} replaced (kafka).
	// Default "cdc.{schema}.{table}".
	Topic string `yaml:"topic"`
	// Delivery is exactly-once or at-least-once (kafka). Default exactly-once.
	Delivery string `yaml:"delivery"`
	// Compression is zstd, lz4, snappy, gzip or none (kafka). Default snappy.
	Compression string `yaml:"compression"`
	// Envelope is debezium or plain (kafka). Default debezium.
	Envelope string `yaml:"envelope"`
	// Tombstones writes a null-value record after each delete (kafka).
	// Default false.
	Tombstones bool `yaml:"tombstones"`
	// Database is source.db in kafka events. Default: source.dsn's database.
	Database string `yaml:"database"`
	// SASL authenticates to the brokers (kafka). Default none.
	SASL KafkaSASL `yaml:"sasl"`
	// TLS encrypts broker connections (kafka). Default off.
	TLS KafkaTLS `yaml:"tls"`
	// Kafka holds the kafka sink's tuning.
	Kafka KafkaTuning `yaml:"kafka"`
}

// KafkaSASL is a kafka sink's `sasl:` section.
type KafkaSASL struct {
	// Mechanism is plain, scram-sha-256, scram-sha-512 or aws-msk-iam.
	Mechanism string `yaml:"mechanism"`
	// Username and Password for plain and scram (use ${ENV} for secrets).
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Region for aws-msk-iam (credentials from the AWS default chain).
	Region string `yaml:"region"`
}

// KafkaTLS is a kafka sink's `tls:` section.
type KafkaTLS struct {
	// Enabled turns TLS on. Default false.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of trusted roots. Default: the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate. Default none.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the verified host name. Default: the broker's.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables verification (tests only). Default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// KafkaTuning is a kafka sink's `kafka:` section; see kafka.Config.
type KafkaTuning struct {
	// CheckpointTopic holds positions. Default cdcd.checkpoints.
	CheckpointTopic string `yaml:"checkpoint_topic"`
	// TransactionalID of the producer. Default cdcd-<name>.
	TransactionalID string `yaml:"transactional_id"`
	// TransactionTimeout of the producer. Default 60s.
	TransactionTimeout Duration `yaml:"transaction_timeout"`
	// Linger of produced batches. Default 5ms.
	Linger Duration `yaml:"linger"`
	// BatchMaxBytes caps a produced record batch. Default 1MB.
	BatchMaxBytes ByteSize `yaml:"batch_max_bytes"`
	// MaxBufferedRecords and MaxBufferedBytes bound unacknowledged records.
	// Defaults 100000 and 256MiB.
	MaxBufferedRecords int      `yaml:"max_buffered_records"`
	MaxBufferedBytes   ByteSize `yaml:"max_buffered_bytes"`
	// Partitions and ReplicationFactor of created topics. Default: broker's.
	Partitions        int32 `yaml:"partitions"`
	ReplicationFactor int16 `yaml:"replication_factor"`
	// SkipCreateTopics never creates topics. Default false.
	SkipCreateTopics bool `yaml:"skip_create_topics"`
	// SkipTruncate drops TRUNCATE events. Default false.
	SkipTruncate bool `yaml:"skip_truncate"`
}

func kafkaConfig(s SinkSpec) kafka.Config {
	return kafka.Config{
		Name: s.Name, Brokers: s.Brokers, Topic: s.Topic, Delivery: s.Delivery, Compression: s.Compression,
		Envelope: s.Envelope, Tombstones: s.Tombstones, Database: s.Database,
		SASL: kafka.SASL{Mechanism: s.SASL.Mechanism, Username: s.SASL.Username, Password: s.SASL.Password, Region: s.SASL.Region},
		TLS: kafka.TLS{Enabled: s.TLS.Enabled, CAFile: s.TLS.CAFile, CertFile: s.TLS.CertFile, KeyFile: s.TLS.KeyFile,
			ServerName: s.TLS.ServerName, InsecureSkipVerify: s.TLS.InsecureSkipVerify},
		CheckpointTopic: s.Kafka.CheckpointTopic, TransactionalID: s.Kafka.TransactionalID,
		TransactionTimeout: time.Duration(s.Kafka.TransactionTimeout), Linger: time.Duration(s.Kafka.Linger),
		BatchMaxBytes: int32(s.Kafka.BatchMaxBytes), MaxBufferedRecords: s.Kafka.MaxBufferedRecords,
		MaxBufferedBytes: int(s.Kafka.MaxBufferedBytes), TopicPartitions: s.Kafka.Partitions,
		ReplicationFactor: s.Kafka.ReplicationFactor, SkipCreateTopics: s.Kafka.SkipCreateTopics,
		SkipTruncate: s.Kafka.SkipTruncate,
	}
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

func (f *File) validateSink(i int, names map[string]bool) error {
	s := &f.Sinks[i]
	key := fmt.Sprintf("sinks[%d]", i)
	if s.Name == "" {
		return f.errAt(key+".name", errors.New("is required: a unique name keys the sink's checkpoint"))
	}
	if names[s.Name] {
		return f.errAt(key+".name", fmt.Errorf("%q is used twice: sink names must be unique", s.Name))
	}
	names[s.Name] = true
	switch s.Kind {
	case "postgres":
		if s.DSN == "" {
			return f.errAt(key+".dsn", errors.New("is required for a postgres sink"))
		}
		if err := f.withPassword(key+".dsn", &s.DSN, s.Password); err != nil {
			return err
		}
	case "kafka":
		if s.Password != "" || s.DSN != "" {
			return f.errAt(key+".dsn", errors.New("dsn and password are for postgres sinks: a kafka sink takes brokers and sasl"))
		}
		if s.Kafka.BatchMaxBytes > math.MaxInt32 {
			return f.errAt(key+".kafka.batch_max_bytes", fmt.Errorf("%d bytes is too large: at most 2GiB-1", s.Kafka.BatchMaxBytes))
		}
		if err := kafkaConfig(*s).Validate(); err != nil {
			return f.errAt(key, err)
		}
		if s.Database == "" {
			s.Database = sourceDatabase(f.Source.DSN)
		}
	case "stdout":
	case "":
		return f.errAt(key+".kind", errors.New("is required: postgres, kafka or stdout"))
	default:
		return f.errAt(key+".kind", fmt.Errorf("%q is not supported: use postgres, kafka or stdout", s.Kind))
	}
	if s.Batch.MaxRows < 0 {
		return f.errAt(key+".batch.max_rows", errors.New("must not be negative"))
	}
	return nil
}

// PipelineConfig returns the library options the file describes: capture,
// the sinks, the table mapping and the snapshot. pipeline.New does the
// wiring; Snapshot.Progress is the caller's to set (a terminal).
func (f *File) PipelineConfig(log *slog.Logger) pipeline.Config {
	cc := f.CaptureConfig(log)
	pc := pipeline.Config{
		Capture:       cc,
		PurgeInterval: time.Duration(f.Trail.PurgeInterval),
		AckApplied:    f.Capture.Ack == "applied",
		Tables:        f.mappingConfig(),
		Snapshot: pipeline.Snapshot{
			Mode: f.Snapshot.Mode, Parallelism: f.Snapshot.Parallelism, ChunkRows: f.Snapshot.ChunkRows,
			CreateSchema: f.Schema.Create,
		},
		Logger: log,
	}
	if f.Source.Kind == KindTrigger {
		tc := f.TriggerConfig(log)
		pc.Trigger = &tc
		pc.Capture.Open = nil // the pipeline opens the trigger source itself
	}
	for _, s := range f.Sinks {
		pc.Sinks = append(pc.Sinks, pipeline.Sink{
			Apply: apply.Config{
				Name:     s.Name,
				MaxRows:  s.Batch.MaxRows,
				MaxBytes: int(s.Batch.MaxBytes),
				MaxDelay: time.Duration(s.Batch.MaxDelay),
			},
			Open: opener(s, f, log),
		})
	}
	return pc
}

func opener(s SinkSpec, f *File, log *slog.Logger) apply.OpenFunc {
	switch s.Kind {
	case "postgres":
		cfg := pgsink.Config{
			Name:            s.Name,
			DSN:             s.DSN,
			CheckpointTable: s.CheckpointTable,
			IAM:             pgsink.IAMConfig{Region: s.IAM.Region},
			CreateSchema:    f.Schema.Create,
			SourceTable:     f.sourceTable(),
		}
		return func(ctx context.Context) (sink.Sink, error) {
			return pgsink.New(ctx, cfg, log) // the sink adds its name
		}
	case "kafka":
		cfg := kafkaConfig(s)
		return func(ctx context.Context) (sink.Sink, error) {
			return kafka.New(ctx, cfg, log.With("sink", s.Name))
		}
	default:
		return func(context.Context) (sink.Sink, error) { return stdout.New(os.Stdout), nil }
	}
}

// sourceDatabase is the database named by a connection string, or "".
func sourceDatabase(dsn string) string {
	c, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return ""
	}
	return c.Database
}
