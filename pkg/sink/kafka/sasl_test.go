package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/cdcd-io/cdcd/internal/kafkatest"
	"github.com/cdcd-io/cdcd/pkg/sink/kafka"
)

// TestSASL opens the sink against a cluster requiring SCRAM: the right
// credentials work (and the sink starts from the beginning), wrong ones fail
// to open. (kfake drops the connection on bad credentials where Kafka answers
// SASL_AUTHENTICATION_FAILED, which the sink treats as terminal: see
// TestClassify.)
func TestSASL(t *testing.T) {
	k := kafkatest.Start(t, kafkatest.Options{Brokers: 1, Extra: []kfake.Opt{
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "cdcd", "s3cret"),
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := kafka.Config{Name: "sasl", Brokers: k.Addrs(),
		SASL: kafka.SASL{Mechanism: "scram-sha-512", Username: "cdcd", Password: "s3cret"}}
	s, err := kafka.New(ctx, cfg, testLogger())
	require.NoError(t, err)
	pos, err := s.Position(ctx)
	require.NoError(t, err)
	require.Zero(t, pos)
	require.NoError(t, s.Close(ctx))

	cfg.SASL.Password = "wrong"
	bctx, bcancel := context.WithTimeout(ctx, 3*time.Second)
	defer bcancel()
	_, err = kafka.New(bctx, cfg, testLogger())
	require.Error(t, err)
}
