package decode

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

var writeSeeds = flag.Bool("write-seeds", false, "rewrite the committed seed corpus in testdata/fuzz/FuzzDecode")

// The fuzz input is a sequence of messages, each prefixed by its length as
// a big-endian uint16 (the last one may run to the end of the input), fed
// into one Decoder so that the stateful paths (relations, transactions) are
// reached.

func joinMsgs(msgs ...[]byte) []byte {
	var b []byte
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
		b = append(b, m...)
	}
	return b
}

func splitMsgs(b []byte) [][]byte {
	var msgs [][]byte
	for len(b) >= 2 && len(msgs) < 256 {
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n > len(b) {
			n = len(b)
		}
		msgs = append(msgs, b[:n:n])
		b = b[n:]
	}
	return msgs
}

// fuzzSeeds are the sequences the fuzzer starts from: the committed corpus
// files and f.Add seeds.
func fuzzSeeds() map[string][]byte {
	s := sampleStream()
	seeds := map[string][]byte{
		"session": joinMsgs(s...),
		"relation-mid-tx": joinMsgs(moodType, usersRel, beginMsg(1, t0, 1),
			insertMsg(oidUsers, tT("1"), tN(), tN(), tN()),
			relationMsg(oidUsers, "public", "users", 'f', col{true, "id", oidInt8, -1}),
			updateMsg(oidUsers, 'O', []tv{tT("1")}, tT("2")),
			commitMsg(1, 2, t0)),
		"reconnect": joinMsgs(usersRel, beginMsg(1, t0, 1), insertMsg(oidUsers, tT("1"), tN(), tN(), tN()),
			beginMsg(1, t0, 1), commitMsg(1, 2, t0), commitMsg(1, 2, t0)),
		"streaming": joinMsgs(newMsg('S').u32(5).u8(1).b, append(newMsg('I').u32(5).b, insertMsg(oidUsers, tT("1"))[1:]...), []byte{'E'},
			newMsg('A').u32(5).u32(6).b, newMsg('c').u32(5).u8(0).u64(1).u64(2).u64(3).b, messageMsg(0, 1, "x", "")),
		"binary-toast": joinMsgs(ordersRel, beginMsg(1, t0, 1),
			insertMsg(oidOrders, tB(1, 2, 3), tU(), tN()),
			deleteMsg(oidOrders, 'O', tB(), tT(""), tU()),
			truncateMsg(3, oidOrders, oidOrders), commitMsg(1, 2, t0)),
	}
	for i, m := range s {
		seeds[fmt.Sprintf("single-%02d-%c", i, m[0])] = joinMsgs(usersRel, ordersRel, beginMsg(1, t0, 1), m)
	}
	return seeds
}

// TestWriteSeeds rewrites the committed corpus when run with -write-seeds.
func TestWriteSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -write-seeds to rewrite testdata/fuzz/FuzzDecode")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for name, b := range fuzzSeeds() {
		if len(name) > 6 && name[:6] == "single" {
			continue // f.Add covers these
		}
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(content), 0o644))
	}
}

func FuzzDecode(f *testing.F) {
	for _, b := range fuzzSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		d, bd := New(), NewBorrowing()
		for i, msg := range splitMsgs(in) {
			buf := append([]byte(nil), msg...)
			wasInTx := d.InTx()
			ev, err := d.Decode(change.LSN(i), buf)
			// A borrowing decoder decodes the same, error for error.
			bev, berr := bd.Decode(change.LSN(i), append([]byte(nil), msg...))
			if err != nil || berr != nil {
				require.Equal(t, fmt.Sprint(err), fmt.Sprint(berr), "message %d %q: borrowing decoder", i, msg)
			} else {
				require.Equal(t, ev, bev, "message %d %q: borrowing decoder", i, msg)
			}
			if err != nil {
				if ev != (Event{}) || d.InTx() != wasInTx {
					t.Fatalf("message %d %q: error %v with event %+v, in tx %v -> %v", i, msg, err, ev, wasInTx, d.InTx())
				}
				continue
			}
			// Nothing decoded may alias the caller's buffer.
			for j := range buf {
				buf[j] ^= 0xFF
			}
			checkEvent(t, d, msg, ev)
			if ev.Kind >= EventStreamStart {
				continue // pglogrepl's v1 parser has no streaming
			}
			if m, err := oracleParse(msg); err == nil {
				if err := agree(d, msg, ev, m); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// checkEvent checks the invariants of a successfully decoded event.
func checkEvent(t *testing.T, d *Decoder, msg []byte, ev Event) {
	t.Helper()
	switch ev.Kind {
	case EventNone:
		require.Equal(t, Event{}, ev)
	case EventBegin:
		require.NotNil(t, ev.Tx)
		require.True(t, d.InTx())
	case EventCommit:
		require.NotNil(t, ev.Tx)
		require.False(t, d.InTx())
	case EventRelation:
		got, ok := d.Relation(ev.Relation.OID)
		require.True(t, ok)
		require.Same(t, ev.Relation, got)
	case EventChange:
		c := ev.Change
		require.NotNil(t, c)
		switch c.Op {
		case change.OpInsert, change.OpUpdate, change.OpDelete:
			require.True(t, d.InTx())
			n := len(c.Relation.Columns)
			if c.Op != change.OpDelete {
				require.Len(t, c.New, n)
			}
			if c.Op != change.OpInsert && c.Old != nil {
				require.Len(t, c.Old, n)
			}
			for _, v := range append(append(change.Row{}, c.Old...), c.New...) {
				require.Equal(t, v.HasData(), v.Data != nil, "value %v", v)
				require.LessOrEqual(t, v.Kind, change.ValueUnchanged)
			}
		case change.OpTruncate:
			require.True(t, d.InTx())
			require.NotNil(t, c.Truncate)
		case change.OpMessage:
			require.NotNil(t, c.Message)
			require.False(t, c.Message.Transactional && !d.InTx())
		default:
			t.Fatalf("op %v from %q", c.Op, msg)
		}
	case EventStreamStart, EventStreamData:
		require.NotNil(t, ev.Stream)
		require.True(t, d.InStream())
	case EventStreamStop:
		require.False(t, d.InStream())
	case EventStreamCommit:
		require.NotNil(t, ev.Tx)
		require.False(t, d.InStream() || d.InTx())
	case EventStreamAbort:
		require.NotNil(t, ev.Stream)
		require.False(t, d.InStream() || d.InTx())
	default:
		t.Fatalf("kind %v from %q", ev.Kind, msg)
	}
}
