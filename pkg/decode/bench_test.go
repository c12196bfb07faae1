package decode

import (
	"runtime"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/cdcd-io/cdcd/pkg/change"
)

const oidWide = 17000

var (
	wideRel = relationMsg(oidWide, "public", "wide", 'd',
		col{true, "id", oidInt8, -1},
		col{false, "email", oidText, -1},
		col{false, "amount", oidNumeric, 655366},
		col{false, "created", oidTimestamptz, -1},
		col{false, "active", oidBool, -1},
		col{false, "note", oidText, -1},
		col{false, "ref", oidUUID, -1},
		col{false, "payload", oidJSONB, -1},
		col{false, "digest", oidBytea, -1},
		col{false, "body", oidText, -1},
	)
	// A 10-column mixed row: text values, a NULL, a binary value and an
	// unchanged TOASTed column.
	wideRow = []tv{
		tT("1234567"), tT("alice@example.com"), tT("12345.67"), tT("2025-03-14 15:09:26.535897+00"),
		tT("t"), tN(), tT("2f1c6b1e-8a4d-4c3b-9e57-0d5f3a1b2c4d"), tT(`{"k":"v","n":[1,2,3]}`),
		tB(0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11), tU(),
	}
	wideInsert = insertMsg(oidWide, wideRow...)
	wideUpdate = updateMsg(oidWide, 'K', []tv{tT("1234567"), tN(), tN(), tN(), tN(), tN(), tN(), tN(), tN(), tN()}, wideRow...)
)

// modes runs bench once per kind of Decoder: "owned" (New: every event
// owns its memory) and "borrowed" (NewBorrowing, as capture decodes).
func modes(b *testing.B, bench func(b *testing.B, d *Decoder)) {
	for _, m := range []struct {
		name string
		new  func() *Decoder
	}{{"owned", New}, {"borrowed", NewBorrowing}} {
		b.Run(m.name, func(b *testing.B) { bench(b, benchDecoder(b, m.new())) })
	}
}

// benchDecoder brings d inside a transaction, knowing the wide relation.
func benchDecoder(b *testing.B, d *Decoder) *Decoder {
	for _, m := range [][]byte{wideRel, beginMsg(1, t0, 1)} {
		if _, err := d.Decode(1, m); err != nil {
			b.Fatal(err)
		}
	}
	return d
}

// measure runs op b.N times and reports events/s and allocs/event, op
// decoding eventsPerOp messages.
func measure(b *testing.B, eventsPerOp int, bytesPerOp int, op func() error) {
	b.ReportAllocs()
	b.SetBytes(int64(bytesPerOp))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	events := float64(b.N) * float64(eventsPerOp)
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/events, "allocs/event")
}

func BenchmarkDecodeInsert(b *testing.B) {
	modes(b, func(b *testing.B, d *Decoder) {
		measure(b, 1, len(wideInsert), func() error {
			_, err := d.Decode(1, wideInsert)
			return err
		})
	})
}

func BenchmarkDecodeUpdate(b *testing.B) {
	modes(b, func(b *testing.B, d *Decoder) {
		measure(b, 1, len(wideUpdate), func() error {
			_, err := d.Decode(1, wideUpdate)
			return err
		})
	})
}

// BenchmarkDecodeTx decodes a transaction of 100 inserts: events are its
// Begin, inserts and Commit.
func BenchmarkDecodeTx(b *testing.B) {
	modes(b, benchDecodeTx)
}

func benchDecodeTx(b *testing.B, d *Decoder) {
	d.Reset()
	begin, commit := beginMsg(0x2000, t0, 700), commitMsg(0x2000, 0x2030, t0)
	msgs := [][]byte{begin}
	for range 100 {
		msgs = append(msgs, wideInsert)
	}
	msgs = append(msgs, commit)
	size := 0
	for _, m := range msgs {
		size += len(m)
	}
	measure(b, len(msgs), size, func() error {
		for _, m := range msgs {
			if _, err := d.Decode(change.LSN(1), m); err != nil {
				return err
			}
		}
		return nil
	})
}

func BenchmarkPglogreplParseInsert(b *testing.B) {
	measure(b, 1, len(wideInsert), func() error {
		_, err := pglogrepl.Parse(wideInsert)
		return err
	})
}

func BenchmarkPglogreplParseUpdate(b *testing.B) {
	measure(b, 1, len(wideUpdate), func() error {
		_, err := pglogrepl.Parse(wideUpdate)
		return err
	})
}
