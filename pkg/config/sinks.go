package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcd-io/cdcd/pkg/apply"
	"github.com/cdcd-io/cdcd/pkg/pipeline"
	"github.com/cdcd-io/cdcd/pkg/sink"
	"github.com/cdcd-io/cdcd/pkg/sink/dynamodb"
	"github.com/cdcd-io/cdcd/pkg/sink/kafka"
	"github.com/cdcd-io/cdcd/pkg/sink/oracle"
	pgsink "github.com/cdcd-io/cdcd/pkg/sink/postgres"
	"github.com/cdcd-io/cdcd/pkg/sink/stdout"
	"github.com/cdcd-io/cdcd/pkg/snapshot"
)

// SinkSpec is one entry of the `sinks:` list.
type SinkSpec struct {
	// Name identifies the sink (logs, checkpoints). Required, unique.
	Name string `yaml:"name"`
	// Kind is postgres, kafka, oracle, dynamodb or stdout. Required.
	Kind string `yaml:"kind"`
	// DSN is the target connection string (postgres; oracle: a godror
	// connection string, user=… connectString="host:1521/service").
	DSN string `yaml:"dsn"`
	// Password overrides DSN's password; any bytes (use ${NAME} or
	// ${file:/path}). Default: the DSN's own.
	Password string `yaml:"password"`
	// CheckpointTable holds the sink's position on the target. Default
	// cdcd.checkpoint (postgres), CDCD_CHECKPOINT (oracle).
	CheckpointTable string `yaml:"checkpoint_table"`
	// IAM enables Aurora/RDS IAM authentication (postgres).
	IAM IAM `yaml:"iam"`
	// Flavor is the kind of PostgreSQL-compatible target (postgres):
	// postgres, aurora-dsql or citus. Default postgres.
	Flavor string `yaml:"flavor"`
	// DSQL tunes flavor aurora-dsql.
	DSQL DSQL `yaml:"dsql"`
	// Citus tunes flavor citus.
	Citus Citus `yaml:"citus"`
	// AsyncCommit applies with synchronous_commit = off and reports a
	// position applied only once the target's WAL is flushed past its
	// commit (postgres, flavor postgres). Default true.
	AsyncCommit *bool `yaml:"async_commit"`
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

	// Region is the AWS region (dynamodb). Default: the AWS default chain's
	// (AWS_REGION, shared config).
	Region string `yaml:"region"`
	// Endpoint overrides the DynamoDB URL (DynamoDB Local, dynalite).
	// Default: the region's endpoint.
	Endpoint string `yaml:"endpoint"`
	// Table is the table name template, {schema} and {table} replaced
	// (dynamodb). Default "{schema}_{table}".
	Table string `yaml:"table"`
	// Keys maps "schema.table" to its item key (dynamodb). Default: the
	// primary key (partition, and sort for a second column).
	Keys map[string]DynamoDBKey `yaml:"keys"`
	// Document is flat or nested (dynamodb). Default flat.
	Document string `yaml:"document"`
	// JSON writes json/jsonb as map or string (dynamodb). Default map.
	JSON string `yaml:"json"`
	// DeadLetter records items over 400 KB in
	// <trail.dir>/<name>.dead-letter.jsonl and goes on (dynamodb). Default
	// false: such an item stops the sink.
	DeadLetter bool `yaml:"dead_letter"`
	// DynamoDB holds the dynamodb sink's tuning.
	DynamoDB DynamoDBTuning `yaml:"dynamodb"`

	// createTables and trailDir are copied from the file by validateSink.
	createTables bool
	trailDir     string

	// Oracle holds the oracle sink's settings.
	Oracle OracleSettings `yaml:"oracle"`
}

// OracleSettings is an oracle sink's `oracle:` section; see oracle.Config.
type OracleSettings struct {
	// Schema is the Oracle schema of the target tables and the checkpoint
	// table. Default: the connecting user's.
	Schema string `yaml:"schema"`
	// Case is upper (PostgreSQL's lower-case names become upper case) or
	// preserve. Default upper.
	Case string `yaml:"case"`
	// EmptyString is what a PostgreSQL '' is written as, since Oracle
	// stores '' as NULL. Default "": NULL.
	EmptyString string `yaml:"empty_string"`
	// LibDir is the Oracle Instant Client directory. Default: the loader's
	// search path (LD_LIBRARY_PATH, ldconfig).
	LibDir string `yaml:"lib_dir"`
	// LOBInlineBytes is the size up to which CLOB/BLOB values bind inline.
	// Default 1000.
	LOBInlineBytes int `yaml:"lob_inline_bytes"`
}

// OracleConfig returns the oracle sink configuration of an oracle sink
// entry.
func OracleConfig(s SinkSpec) oracle.Config {
	return oracle.Config{
		Name: s.Name, DSN: s.DSN, Password: s.Password, LibDir: s.Oracle.LibDir, Schema: s.Oracle.Schema,
		CheckpointTable: s.CheckpointTable, Case: oracle.Case(s.Oracle.Case), EmptyString: s.Oracle.EmptyString,
		LOBInlineBytes: s.Oracle.LOBInlineBytes,
	}
}

// DynamoDBKey is one entry of a dynamodb sink's `keys:` map.
type DynamoDBKey struct {
	// Partition is the partition key column. Required.
	Partition string `yaml:"partition"`
	// Sort is the sort key column. Default none.
	Sort string `yaml:"sort"`
}

// DynamoDBTuning is a dynamodb sink's `dynamodb:` section; see
// dynamodb.Config.
type DynamoDBTuning struct {
	// CheckpointTable holds positions. Default cdcd_checkpoints.
	CheckpointTable string `yaml:"checkpoint_table"`
	// VersionAttribute holds item versions. Default cdcd_version.
	VersionAttribute string `yaml:"version_attribute"`
	// DocumentAttribute is the map attribute of nested items. Default doc.
	DocumentAttribute string `yaml:"document_attribute"`
	// Parallelism is the number of write calls in flight. Default 8.
	Parallelism int `yaml:"parallelism"`
	// MaxBackoff caps retry waits. Default 5s.
	MaxBackoff Duration `yaml:"max_backoff"`
}

// DynamoDBConfig is the dynamodb sink configuration a sink entry describes.
func (s SinkSpec) DynamoDBConfig(log *slog.Logger) dynamodb.Config {
	c := dynamodb.Config{
		Name: s.Name, Region: s.Region, Endpoint: s.Endpoint, Table: s.Table, Document: s.Document, JSON: s.JSON,
		CheckpointTable: s.DynamoDB.CheckpointTable, VersionAttribute: s.DynamoDB.VersionAttribute,
		DocumentAttribute: s.DynamoDB.DocumentAttribute, Parallelism: s.DynamoDB.Parallelism,
		MaxBackoff: time.Duration(s.DynamoDB.MaxBackoff), CreateTables: s.createTables, Logger: log,
	}
	if len(s.Keys) > 0 {
		c.Keys = make(map[string]dynamodb.Key, len(s.Keys))
		for t, k := range s.Keys {
			c.Keys[t] = dynamodb.Key{Partition: k.Partition, Sort: k.Sort}
		}
	}
	if s.DeadLetter {
		c.DeadLetter = filepath.Join(s.trailDir, s.Name+".dead-letter.jsonl")
	}
	return c
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
	// MinBatchDelay holds a batch (one Kafka transaction) open this long
	// for more source transactions once apply has caught up, at most
	// batch.max_delay. Default 50ms; off: commit as soon as apply catches up.
	MinBatchDelay Duration `yaml:"min_batch_delay"`
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
		MinBatchDelay: time.Duration(s.Kafka.MinBatchDelay),
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

// DSQL is a postgres sink's `dsql:` section (flavor aurora-dsql); see
// pgsink.DSQLConfig.
type DSQL struct {
	// Region signs the IAM tokens. Default: the region in the DSN's host
	// (<cluster>.dsql.<region>.on.aws).
	Region string `yaml:"region"`
	// MaxTxRows bounds the rows one target transaction modifies, the
	// checkpoint row included (DSQL: 3,000). Default 2500.
	MaxTxRows int `yaml:"max_tx_rows"`
	// MaxTxBytes bounds the bytes one target transaction writes (DSQL:
	// 10 MiB). Default 8MiB.
	MaxTxBytes ByteSize `yaml:"max_tx_bytes"`
	// MaxTxDuration bounds one target transaction (DSQL: 5m). Default 4m.
	MaxTxDuration Duration `yaml:"max_tx_duration"`
	// ConnMaxAge replaces a connection this old (DSQL: 1h). Default 50m.
	ConnMaxAge Duration `yaml:"conn_max_age"`
	// MaxRetries of a transaction failing with 40001. Default 10.
	MaxRetries int `yaml:"max_retries"`
}

// Citus is a postgres sink's `citus:` section (flavor citus); see
// pgsink.CitusConfig.
type Citus struct {
	// Distribution maps "schema.table" to its distribution column, a
	// primary-key column. Default: the first primary-key column.
	Distribution map[string]string `yaml:"distribution"`
	// Reference lists tables to create as reference tables. Default none.
	Reference []string `yaml:"reference"`
	// ReferenceMaxRows: tables estimated at this many rows or fewer (and
	// without a distribution entry) become reference tables; -1 never.
	// Default 10000.
	ReferenceMaxRows int64 `yaml:"reference_max_rows"`
	// ColocateWith maps "schema.table" to the table it is colocated with.
	// Default: Citus's default colocation group.
	ColocateWith map[string]string `yaml:"colocate_with"`
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
		if err := f.validateFlavor(key, s); err != nil {
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
	case "oracle":
		if s.DSN == "" {
			return f.errAt(key+".dsn", errors.New(`is required for an oracle sink: user=cdc connectString="host:1521/service" (password: in the password key)`))
		}
		switch oracle.Case(s.Oracle.Case) {
		case "", oracle.CaseUpper, oracle.CasePreserve:
		default:
			return f.errAt(key+".oracle.case", fmt.Errorf("%q: use upper (the default) or preserve", s.Oracle.Case))
		}
		if s.Oracle.LOBInlineBytes < 0 || s.Oracle.LOBInlineBytes > 32767 {
			return f.errAt(key+".oracle.lob_inline_bytes", fmt.Errorf("%d: want 1 to 32767 (default 1000)", s.Oracle.LOBInlineBytes))
		}
		if err := OracleConfig(*s).Validate(); err != nil {
			return f.errAt(key, err)
		}
	case "dynamodb":
		if s.Password != "" || s.DSN != "" {
			return f.errAt(key+".dsn", errors.New("dsn and password are for postgres sinks: a dynamodb sink takes region and endpoint, credentials come from the AWS default chain"))
		}
		s.createTables, s.trailDir = f.Schema.Create, f.Trail.Dir
		if err := s.DynamoDBConfig(nil).Validate(); err != nil {
			return f.errAt(key, err)
		}
	case "stdout":
	case "":
		return f.errAt(key+".kind", errors.New("is required: postgres, kafka, oracle, dynamodb or stdout"))
	default:
		return f.errAt(key+".kind", fmt.Errorf("%q is not supported: use postgres, kafka, oracle, dynamodb or stdout", s.Kind))
	}
	if s.Kind != "postgres" && s.AsyncCommit != nil {
		return f.errAt(key+".async_commit", fmt.Errorf("is for postgres sinks, this one is %s", s.Kind))
	}
	if s.Kind != "oracle" && s.Oracle != (OracleSettings{}) {
		return f.errAt(key+".oracle", fmt.Errorf("is for oracle sinks, this one is %s", s.Kind))
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
		cfg := PostgresSinkConfig(s)
		cfg.CreateSchema, cfg.SourceTable = f.Schema.Create, f.sourceTable()
		return func(ctx context.Context) (sink.Sink, error) {
			return pgsink.New(ctx, cfg, log) // the sink adds its name
		}
	case "kafka":
		cfg := kafkaConfig(s)
		return func(ctx context.Context) (sink.Sink, error) {
			return kafka.New(ctx, cfg, log.With("sink", s.Name))
		}
	case "oracle":
		cfg := OracleConfig(s)
		return func(ctx context.Context) (sink.Sink, error) {
			return oracle.New(ctx, cfg, log) // the sink adds its name
		}
	case "dynamodb":
		cfg := s.DynamoDBConfig(log.With("sink", s.Name))
		return func(ctx context.Context) (sink.Sink, error) {
			return dynamodb.New(ctx, cfg)
		}
	default:
		return func(context.Context) (sink.Sink, error) { return stdout.New(os.Stdout), nil }
	}
}

// PostgresSinkConfig returns the postgres sink configuration of a
// validated `kind: postgres` entry.
func PostgresSinkConfig(s SinkSpec) pgsink.Config {
	flavor, _ := pgsink.ParseFlavor(s.Flavor) // checked by validateFlavor
	return pgsink.Config{
		Name:            s.Name,
		DSN:             s.DSN,
		CheckpointTable: s.CheckpointTable,
		IAM:             pgsink.IAMConfig{Region: s.IAM.Region},
		Flavor:          flavor,
		SyncCommit:      s.AsyncCommit != nil && !*s.AsyncCommit,
		DSQL: pgsink.DSQLConfig{
			Region: s.DSQL.Region, MaxTxRows: s.DSQL.MaxTxRows, MaxTxBytes: int(s.DSQL.MaxTxBytes),
			MaxTxDuration: time.Duration(s.DSQL.MaxTxDuration), ConnMaxAge: time.Duration(s.DSQL.ConnMaxAge),
			MaxRetries: s.DSQL.MaxRetries,
		},
		Citus: pgsink.CitusConfig{
			Distribution: s.Citus.Distribution, Reference: s.Citus.Reference,
			ReferenceMaxRows: s.Citus.ReferenceMaxRows, ColocateWith: s.Citus.ColocateWith,
		},
	}
}

// validateFlavor checks a postgres sink's flavor and its section.
func (f *File) validateFlavor(key string, s *SinkSpec) error {
	flavor, err := pgsink.ParseFlavor(s.Flavor)
	if err != nil {
		return f.errAt(key+".flavor", err)
	}
	zeroDSQL := s.DSQL.Region == "" && s.DSQL.MaxTxRows == 0 && s.DSQL.MaxTxBytes == 0 && s.DSQL.MaxTxDuration == 0 &&
		s.DSQL.ConnMaxAge == 0 && s.DSQL.MaxRetries == 0
	zeroCitus := len(s.Citus.Distribution) == 0 && len(s.Citus.Reference) == 0 && s.Citus.ReferenceMaxRows == 0 && len(s.Citus.ColocateWith) == 0
	switch {
	case flavor != pgsink.FlavorDSQL && !zeroDSQL:
		return f.errAt(key+".dsql", fmt.Errorf("is for flavor aurora-dsql, the sink's flavor is %s", flavor))
	case flavor != pgsink.FlavorCitus && !zeroCitus:
		return f.errAt(key+".citus", fmt.Errorf("is for flavor citus, the sink's flavor is %s", flavor))
	case flavor != pgsink.FlavorPostgres && s.AsyncCommit != nil && *s.AsyncCommit:
		return f.errAt(key+".async_commit", fmt.Errorf("is for flavor postgres: %s commits synchronously", flavor))
	}
	if flavor != pgsink.FlavorDSQL {
		return nil
	}
	switch {
	case s.IAM.Region != "":
		return f.errAt(key+".iam", errors.New("is for Aurora/RDS PostgreSQL: aurora-dsql always signs IAM tokens; set dsql.region if the host does not name it"))
	case s.Password != "":
		return f.errAt(key+".password", errors.New("aurora-dsql authenticates with IAM tokens only: remove the password"))
	case s.DSQL.MaxTxRows < 0 || s.DSQL.MaxTxRows >= 3000:
		return f.errAt(key+".dsql.max_tx_rows", fmt.Errorf("%d: must be below DSQL's 3,000 rows per transaction", s.DSQL.MaxTxRows))
	case s.DSQL.MaxTxBytes < 0 || s.DSQL.MaxTxBytes >= 10<<20:
		return f.errAt(key+".dsql.max_tx_bytes", fmt.Errorf("%d: must be below DSQL's 10 MiB per transaction", s.DSQL.MaxTxBytes))
	case time.Duration(s.DSQL.MaxTxDuration) >= 5*time.Minute:
		return f.errAt(key+".dsql.max_tx_duration", errors.New("must be below DSQL's 5 minutes per transaction"))
	case time.Duration(s.DSQL.ConnMaxAge) >= time.Hour:
		return f.errAt(key+".dsql.conn_max_age", errors.New("must be below DSQL's 1 hour per connection"))
	}
	return nil
}

// sourceDatabase is the database named by a connection string, or "".
func sourceDatabase(dsn string) string {
	c, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return ""
	}
	return c.Database
}

// forwardStreamed reports whether source.forward_streamed (auto) is on:
// a forwarded transaction may still abort and its Partial batches carry no
// commit position, so every sink must apply them in one target transaction
// that stays invisible until its end, and no snapshot may have to drop
// changes by commit position (mapping.Wrap's skip).
func (f *File) forwardStreamed() bool {
	if f.Source.ForwardStreamed == "off" || f.Source.Streaming == "off" || f.Source.Kind == KindTrigger {
		return false
	}
	if f.Snapshot.Mode != "" && f.Snapshot.Mode != snapshot.ModeNever {
		return false
	}
	for _, s := range f.Sinks {
		switch s.Kind {
		case "postgres":
			if flavor, _ := pgsink.ParseFlavor(s.Flavor); flavor == pgsink.FlavorDSQL {
				return false
			}
		case "oracle":
		default:
			return false
		}
	}
	return true
}
