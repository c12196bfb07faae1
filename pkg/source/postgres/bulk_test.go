package postgres

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/decode"
)

// The socket reader may saturate only inside a large transaction, one that
// reached bulkRows changes (streamed or not); the next transaction's Begin,
// or another transaction's stream block, ends it.
func TestStreamHintsLargeTransactions(t *testing.T) {
	sock := &batchReader{}
	st := &Stream{src: &Source{sock: sock}, dec: decode.NewBorrowing(), spool: newSpool(t.TempDir())}
	ctx := context.Background()
	event := func(k decode.Kind) {
		t.Helper()
		_, err := st.event(ctx, decode.Event{Kind: k, Tx: &change.Tx{}}, 0)
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

	// A streamed transaction counts its data messages across its stream
	// blocks: with a small logical_decoding_work_mem ordinary transactions
	// are streamed too.
	msg := func(b ...byte) {
		t.Helper()
		_, err := st.decode(ctx, 0, b)
		require.NoError(t, err)
	}
	msg('S', 0, 0, 0, 7, 1) // Stream Start of transaction 7, first block
	require.False(t, sock.bulk, "a streamed transaction that has spooled nothing")
	for range bulkRows - 1 {
		msg('I', 0, 0, 0, 7, 0, 0, 0, 1) // an insert's xid, then a body not decoded here
	}
	require.False(t, sock.bulk, "a streamed transaction below bulkRows messages")
	msg('E') // Stream Stop
	msg('S', 0, 0, 0, 8, 1)
	require.False(t, sock.bulk, "another small streamed transaction")
	msg('E')
	msg('S', 0, 0, 0, 7, 0) // transaction 7 again, a later block
	require.False(t, sock.bulk)
	msg('I', 0, 0, 0, 7, 0, 0, 0, 1)
	require.True(t, sock.bulk, "a streamed transaction of bulkRows messages")
	msg('E')
	msg('S', 0, 0, 0, 7, 0)
	require.True(t, sock.bulk, "its next block")
}
