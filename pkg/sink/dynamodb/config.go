package dynamodb

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/smithy-go/middleware"
)

// Document layouts (Config.Document).
const (
	// Flat writes every column as a top-level attribute.
	Flat = "flat"
	// Nested writes the key attributes at the top level and every column
	// under one map attribute (Config.DocumentAttribute).
	Nested = "nested"
)

// JSON encodings (Config.JSON).
const (
	// JSONMap writes json/jsonb as DynamoDB documents (M, L, N, S, BOOL, NULL).
	JSONMap = "map"
	// JSONString writes json/jsonb as their text in an S attribute.
	JSONString = "string"
)

const defaultTable = "{schema}_{table}"

// Key names the item key attributes of one table.
type Key struct {
	// Partition is the column that becomes the partition (hash) key. Required.
	Partition string
	// Sort is the column that becomes the sort (range) key; "" for none.
	Sort string
}

// Config configures the sink. The zero value of every field means its default.
type Config struct {
	// Name is the sink's name: the key of its checkpoint item. Required.
	Name string
	// Region is the AWS region. Default: the AWS default chain's (AWS_REGION,
	// shared config); required if that has none.
	Region string
	// Endpoint overrides the service URL (DynamoDB Local, dynalite).
	// Default: the region's public endpoint.
	Endpoint string
	// Table is the table name template; {schema} and {table} are replaced by
	// the (mapped) source table's names. Default "{schema}_{table}".
	Table string
	// Keys maps "schema.table" (target names) to its item key. Default: the
	// primary key, whose one or two columns become partition and sort key.
	Keys map[string]Key
	// Document is Flat or Nested. Default Flat.
	Document string
	// DocumentAttribute is the map attribute of Nested items. Default "doc".
	DocumentAttribute string
	// JSON is JSONMap or JSONString. Default JSONMap.
	JSON string
	// VersionAttribute holds each item's version (see doc.go). Default
	// "cdcd_version".
	VersionAttribute string
	// CheckpointTable holds the sinks' checkpoint items; it is created
	// (on-demand) when missing. Default "cdcd_checkpoints".
	CheckpointTable string
	// CreateTables creates missing tables (on-demand billing, key schema
	// from Keys or the primary key) and waits until they are active.
	// Default false: a missing table is an error.
	CreateTables bool
	// DeadLetter is a file to which items over DynamoDB's 400 KB limit are
	// appended (one JSON line each) so apply goes on. Default "": such an
	// item stops the sink with an error naming its table and key.
	DeadLetter string
	// Parallelism is the number of write calls in flight. Default 8.
	Parallelism int
	// MaxBackoff caps the wait between retries of UnprocessedItems and of
	// throttled calls. Default 5s.
	MaxBackoff time.Duration
	// MaxAttempts is the SDK retryer's attempts per call for errors other
	// than throttling (which is retried without limit), and the number of
	// further retries the sink makes of a call the SDK gave up on. Default 8.
	MaxAttempts int
	// APIOptions are extra SDK middleware (metrics, fault injection in
	// tests). Default none.
	APIOptions []func(*middleware.Stack) error
	// Logger receives the sink's log lines. Default: discard.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Table == "" {
		c.Table = defaultTable
	}
	if c.Document == "" {
		c.Document = Flat
	}
	if c.DocumentAttribute == "" {
		c.DocumentAttribute = "doc"
	}
	if c.JSON == "" {
		c.JSON = JSONMap
	}
	if c.VersionAttribute == "" {
		c.VersionAttribute = "cdcd_version"
	}
	if c.CheckpointTable == "" {
		c.CheckpointTable = "cdcd_checkpoints"
	}
	if c.Parallelism <= 0 {
		c.Parallelism = 8
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 8
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first configuration error, in terms of the YAML keys.
func (c Config) Validate() error {
	if c.Name == "" {
		return errors.New("name is required")
	}
	switch c.Document {
	case "", Flat, Nested:
	default:
		return fmt.Errorf("document %q is not flat or nested", c.Document)
	}
	switch c.JSON {
	case "", JSONMap, JSONString:
	default:
		return fmt.Errorf("json %q is not map or string", c.JSON)
	}
	for t, k := range c.Keys {
		if !strings.Contains(t, ".") {
			return fmt.Errorf("keys: %q is not schema.table", t)
		}
		if k.Partition == "" {
			return fmt.Errorf("keys[%q].partition is required", t)
		}
		if k.Partition == k.Sort {
			return fmt.Errorf("keys[%q]: partition and sort are both %q", t, k.Sort)
		}
	}
	if c.Endpoint != "" && !strings.HasPrefix(c.Endpoint, "http://") && !strings.HasPrefix(c.Endpoint, "https://") {
		return fmt.Errorf("endpoint %q is not an http:// or https:// URL", c.Endpoint)
	}
	if c.Parallelism < 0 {
		return errors.New("parallelism must not be negative")
	}
	return nil
}

// tableName applies the template to a table.
func (c Config) tableName(schema, table string) string {
	return strings.NewReplacer("{schema}", schema, "{table}", table).Replace(c.Table)
}
