package postgres

import (
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/decode"
)

func spoolAll(t *testing.T, r *spoolReader) []string {
	t.Helper()
	var got []string
	for {
		lsn, msg, ok, err := r.next()
		require.NoError(t, err)
		if !ok {
			return got
		}
		got = append(got, fmt.Sprintf("%s %c %s", lsn, msg[0], msg[1:]))
	}
}

// TestSpool: a transaction that outgrows its memory share moves to a file
// and reads back in order without its aborted subtransaction; an aborted
// transaction leaves no file; a new session's first spill removes files an
// earlier one left.
func TestSpool(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(dir+"/xid-1-left.spool", []byte("old"), 0o600))
	s := newSpool(dir)
	require.NoError(t, s.start(10, true))
	require.NoError(t, s.start(20, true))
	body := make([]byte, 4000)
	var want []string
	for i := range 1000 {
		sub := uint32(10)
		if i%3 == 1 {
			sub = 11
		}
		copy(body, fmt.Sprintf("row %04d", i))
		require.NoError(t, s.add(10, change.LSN(i), &decode.Stream{XID: sub, Type: 'I', Body: body}))
		require.NoError(t, s.add(20, change.LSN(i), &decode.Stream{XID: 20, Type: 'I', Body: body[:8]}))
		if sub != 11 {
			want = append(want, fmt.Sprintf("%s I %s", change.LSN(i), body))
		}
	}
	require.LessOrEqual(t, s.memBytes, spoolMemBytes)
	require.NotNil(t, s.txs[10].f, "4 MB went to a file")
	require.Nil(t, s.txs[20].f, "8 KB stayed in memory")
	_, err := os.Stat(dir + "/xid-1-left.spool")
	require.ErrorIs(t, err, os.ErrNotExist, "an earlier session's file is removed")

	require.NoError(t, s.add(10, 5000, &decode.Stream{XID: 11, Type: 'R', Body: []byte("schema")}))
	want = append(want, "0/1388 R schema")
	s.abort(10, 11)
	r, err := s.commit(10)
	require.NoError(t, err)
	got := spoolAll(t, r)
	require.Len(t, got, len(want))
	require.Equal(t, want, got)
	name := r.tx.f.Name()
	r.close()
	_, err = os.Stat(name)
	require.ErrorIs(t, err, os.ErrNotExist)

	require.NoError(t, s.start(30, true))
	for i := range 500 {
		require.NoError(t, s.add(30, change.LSN(i), &decode.Stream{XID: 30, Type: 'I', Body: body}))
	}
	f := s.txs[30].f.Name()
	s.abort(30, 30)
	_, err = os.Stat(f)
	require.ErrorIs(t, err, os.ErrNotExist, "an aborted transaction's file is removed")
	require.Equal(t, 1, s.open())

	r, err = s.commit(20)
	require.NoError(t, err)
	require.Len(t, spoolAll(t, r), 1000)
	r.close()
	require.Zero(t, s.memBytes)
	r, err = s.commit(99)
	require.NoError(t, err)
	require.Nil(t, r, "a transaction that sent nothing in this session")
	s.close()
}
