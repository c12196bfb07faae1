package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Delivery guarantees (Config.Delivery).
const (
	// ExactlyOnce writes each batch and its checkpoint in one Kafka transaction.
	ExactlyOnce = "exactly-once"
	// AtLeastOnce uses the idempotent producer without transactions.
	AtLeastOnce = "at-least-once"
)

// Envelopes (Config.Envelope).
const (
	// EnvDebezium is Debezium's change event payload.
	EnvDebezium = "debezium"
	// EnvPlain is the after row alone.
	EnvPlain = "plain"
)

const defaultTopic = "cdc.{schema}.{table}"

// DefaultMinBatchDelay is Config.MinBatchDelay's default.
const DefaultMinBatchDelay = 50 * time.Millisecond

// Config configures the sink. The zero value of every field means its default.
type Config struct {
	// Name is the sink's name: the checkpoint key, source.name in events, and
	// part of the default transactional id. Required.
	Name string
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// Topic is the topic template; {schema} and {table} are replaced.
	// Default "cdc.{schema}.{table}".
	Topic string
	// Delivery is ExactlyOnce or AtLeastOnce. Default ExactlyOnce.
	Delivery string
	// Compression is zstd (at its fastest level), lz4, snappy, gzip or none.
	// Default snappy.
	Compression string
	// Envelope is EnvDebezium or EnvPlain. Default EnvDebezium.
	Envelope string
	// Tombstones writes a null-value record after each delete. Default false
	// (Debezium's default is true: turn it on for compacted topics).
	Tombstones bool
	// SkipTruncate drops TRUNCATE events (their key is null, which compacted
	// topics refuse). Default false.
	SkipTruncate bool
	// Database is source.db in events. Default "".
	Database string
	// CheckpointTopic is the compacted topic holding sink positions.
	// Default "cdcd.checkpoints".
	CheckpointTopic string
	// TransactionalID is the producer's transactional id (exactly-once). Two
	// running producers with one id fence each other. Default "cdcd-" + Name.
	TransactionalID string
	// TransactionTimeout is how long the broker lets a transaction stay open
	// before aborting it (bounds how long a killed cdcd blocks
	// read_committed consumers if no new cdcd starts). Default 60s.
	TransactionTimeout time.Duration
	// MinBatchDelay is how long apply may hold a batch — one Kafka
	// transaction (exactly-once) or one flush (at-least-once) — open for
	// more source transactions once it has caught up with the trail
	// (sink.BatchPacer), capped by the sink's batch max_delay. Each batch
	// costs round trips, a checkpoint record and, for transactions, commit
	// markers on every partition written: without the delay a sink that
	// keeps up with capture commits every few source transactions. Default
	// 50ms; negative: close batches as soon as apply catches up.
	MinBatchDelay time.Duration
	// Linger is how long a partition's batch waits for more records.
	// Default 5ms.
	Linger time.Duration
	// BatchMaxBytes caps one produced record batch. Default 1MB (the broker's
	// default max.message.bytes).
	BatchMaxBytes int32
	// MaxBufferedRecords blocks producing while this many records are not yet
	// acknowledged. Default 100000.
	MaxBufferedRecords int
	// MaxBufferedBytes blocks producing while this many bytes are not yet
	// acknowledged. Default 256 MiB.
	MaxBufferedBytes int
	// TopicPartitions and ReplicationFactor are used when creating topics.
	// Default -1: the broker's defaults.
	TopicPartitions   int32
	ReplicationFactor int16
	// SkipCreateTopics never creates topics (they must exist). Default false.
	SkipCreateTopics bool
	// SASL authenticates; empty Mechanism means none.
	SASL SASL
	// TLS encrypts connections when Enabled.
	TLS TLS
	// Now is the clock for events' ts_ms. Default time.Now.
	Now func() time.Time
}

// SASL configures authentication.
type SASL struct {
	// Mechanism is plain, scram-sha-256, scram-sha-512 or aws-msk-iam.
	Mechanism string
	// Username and Password for plain and scram.
	Username, Password string
	// Region for aws-msk-iam; credentials come from the AWS default chain
	// (environment, shared config, instance role).
	Region string
}

// TLS configures encryption.
type TLS struct {
	// Enabled turns TLS on (with the system roots unless CAFile is set).
	Enabled bool
	// CAFile is a PEM bundle of trusted roots.
	CAFile string
	// CertFile and KeyFile are a client certificate (mutual TLS).
	CertFile, KeyFile string
	// ServerName overrides the name verified in the broker certificate.
	ServerName string
	// InsecureSkipVerify disables certificate verification (tests only).
	InsecureSkipVerify bool
}

func (c Config) withDefaults() Config {
	if c.Topic == "" {
		c.Topic = defaultTopic
	}
	if c.Delivery == "" {
		c.Delivery = ExactlyOnce
	}
	if c.Compression == "" {
		c.Compression = "snappy"
	}
	if c.Envelope == "" {
		c.Envelope = EnvDebezium
	}
	if c.CheckpointTopic == "" {
		c.CheckpointTopic = "cdcd.checkpoints"
	}
	if c.TransactionalID == "" {
		c.TransactionalID = "cdcd-" + c.Name
	}
	if c.TransactionTimeout <= 0 {
		c.TransactionTimeout = time.Minute
	}
	if c.MinBatchDelay == 0 {
		c.MinBatchDelay = DefaultMinBatchDelay
	}
	if c.Linger <= 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.BatchMaxBytes <= 0 {
		c.BatchMaxBytes = 1000012
	}
	if c.MaxBufferedRecords <= 0 {
		c.MaxBufferedRecords = 100000
	}
	if c.MaxBufferedBytes <= 0 {
		c.MaxBufferedBytes = 256 << 20
	}
	if c.TopicPartitions == 0 {
		c.TopicPartitions = -1
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first configuration error, in terms of the YAML keys.
func (c Config) Validate() error {
	if c.Name == "" {
		return errors.New("name is required")
	}
	if len(c.Brokers) == 0 {
		return errors.New(`brokers is required for a kafka sink, e.g. ["kafka-1:9092"]`)
	}
	switch c.Delivery {
	case "", ExactlyOnce, AtLeastOnce:
	default:
		return fmt.Errorf("delivery %q is not exactly-once or at-least-once", c.Delivery)
	}
	if _, err := codec(c.Compression); err != nil {
		return err
	}
	switch c.Envelope {
	case "", EnvDebezium, EnvPlain:
	default:
		return fmt.Errorf("envelope %q is not debezium or plain", c.Envelope)
	}
	switch strings.ToLower(c.SASL.Mechanism) {
	case "", "plain", "scram-sha-256", "scram-sha-512":
	case "aws-msk-iam":
		if c.SASL.Region == "" {
			return errors.New("sasl.region is required for aws-msk-iam")
		}
	default:
		return fmt.Errorf("sasl.mechanism %q is not plain, scram-sha-256, scram-sha-512 or aws-msk-iam", c.SASL.Mechanism)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("tls.cert_file and tls.key_file go together")
	}
	return nil
}

func codec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "", "snappy":
		return kgo.SnappyCompression(), nil
	case "zstd":
		// Level 1 is klauspost/compress's zstd.SpeedFastest. On change
		// events (small, repetitive JSON records) it compresses as well
		// as the default level (ratio 18.6 vs 18.5 on 52-record batches
		// of the benchmark's rows) for about 30% less compression CPU,
		// which runs on the machine's cores beside capture.
		return kgo.ZstdCompression().WithLevel(1), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "none":
		return kgo.NoCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("compression %q is not zstd, lz4, snappy, gzip or none", name)
}

// clientOpts are the options every client of the sink shares: brokers,
// security, logging.
func (c Config) clientOpts(log kgo.Logger) ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID("cdcd-" + c.Name),
		kgo.WithLogger(log),
	}
	if c.TLS.Enabled {
		tc, err := c.TLS.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if c.SASL.Mechanism != "" {
		opts = append(opts, kgo.SASL(c.SASL.mechanism()))
	}
	return opts, nil
}

func (s SASL) mechanism() sasl.Mechanism {
	switch strings.ToLower(s.Mechanism) {
	case "scram-sha-256":
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism()
	case "scram-sha-512":
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism()
	case "aws-msk-iam":
		region := s.Region
		return aws.ManagedStreamingIAM(func(ctx context.Context) (aws.Auth, error) {
			cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region))
			if err != nil {
				return aws.Auth{}, fmt.Errorf("load AWS credentials: %w", err)
			}
			cr, err := cfg.Credentials.Retrieve(ctx)
			if err != nil {
				return aws.Auth{}, fmt.Errorf("retrieve AWS credentials: %w", err)
			}
			return aws.Auth{AccessKey: cr.AccessKeyID, SecretKey: cr.SecretAccessKey, SessionToken: cr.SessionToken}, nil
		})
	default:
		return plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism()
	}
}

func (t TLS) config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in for tests
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s holds no PEM certificate", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
