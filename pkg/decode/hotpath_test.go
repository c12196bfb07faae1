package decode_test

import (
	"runtime"
	"testing"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/decode"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// BenchmarkCapturePath measures capture's CPU per event without the network:
// pgoutput messages decoded by a borrowing Decoder (as the pgoutput source
// does) and written to a trail as capture's loop does — transactions of 100
// wide inserts, a group-commit Sync every 10 transactions. Events are the
// Begin, inserts and Commit. "owned" decodes with New, for comparison.
func BenchmarkCapturePath(b *testing.B) {
	b.Run("owned", func(b *testing.B) { benchCapturePath(b, decode.New()) })
	b.Run("borrowed", func(b *testing.B) { benchCapturePath(b, decode.NewBorrowing()) })
}

func benchCapturePath(b *testing.B, d *decode.Decoder) {
	w, err := trail.Open(b.TempDir(), trail.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	ev, err := d.Decode(1, decode.WideRelation)
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Schema(ev.Relation); err != nil {
		b.Fatal(err)
	}
	write := func(ev decode.Event) error {
		switch ev.Kind {
		case decode.EventBegin:
			return w.Begin(ev.Tx)
		case decode.EventChange:
			return w.Change(ev.Change)
		case decode.EventCommit:
			return w.Commit(ev.Tx)
		}
		return nil
	}
	size := 0
	for _, m := range decode.WideTx {
		size += len(m)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, m := range decode.WideTx {
			ev, err := d.Decode(change.LSN(1), m)
			if err != nil {
				b.Fatal(err)
			}
			if err := write(ev); err != nil {
				b.Fatal(err)
			}
		}
		if i%10 == 9 {
			if _, err := w.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	events := float64(b.N) * float64(len(decode.WideTx))
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/events, "allocs/event")
}
