package postgres

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/decode"
)

// The socket reader may saturate only inside a large transaction: a
// streamed one, or one that reached bulkRows changes; the next
// transaction's Begin ends it.
func TestStreamHintsLargeTransactions(t *testing.T) {
	sock := &batchReader{}
	st := &Stream{src: &Source{sock: sock}, dec: decode.NewBorrowing(), spool: newSpool(t.TempDir())}
	ctx := context.Background()
	event := func(k decode.Kind) {
		t.Helper()
		_, err := st.event(ctx, decode.Event{Kind: k}, 0)
		require.NoError(t, err)
	}
	event(decode.EventBegin)
	for range bulkRows - 1 {
		event(decode.EventChange)
	}
	require.False(t, sock.bulk, "a transaction below bulkRows changes")
	event(decode.EventChange)
	require.True(t, sock.bulk, "a transaction of bulkRows changes")
	event(decode.EventCommit)
	event(decode.EventBegin)
	require.False(t, sock.bulk, "the next transaction starts small")

	// Stream Start of transaction 7, its first segment.
	_, err := st.decode(ctx, 0, []byte{'S', 0, 0, 0, 7, 1})
	require.NoError(t, err)
	require.True(t, sock.bulk, "a streamed transaction")
}
