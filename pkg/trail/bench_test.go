package trail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// benchChange is an update of a 3-column row whose name column holds
// valueBytes bytes: a typical OLTP change with an old key.
func benchChange(rel *change.Relation, valueBytes int) *change.Change {
	return &change.Change{
		Op: change.OpUpdate, LSN: 0x1000, Relation: rel,
		Old:        change.Row{change.Text("123456789"), {Kind: change.ValueAbsent}, {Kind: change.ValueAbsent}},
		OldKeyOnly: true,
		New:        change.Row{change.Text("123456789"), {Kind: change.ValueText, Data: bytes.Repeat([]byte("x"), valueBytes)}, change.Unchanged},
	}
}

// BenchmarkAppend measures the capture path: one op is one CHANGE record,
// in transactions of 10 changes, with a group-commit Sync (fdatasync) every
// syncEvery records.
func BenchmarkAppend(b *testing.B) {
	for _, valueBytes := range []int{100, 1000} {
		for _, syncEvery := range []int{100, 1000, 10000} {
			b.Run(fmt.Sprintf("value=%dB/sync=%d", valueBytes, syncEvery), func(b *testing.B) {
				w, err := Open(b.TempDir(), Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer w.Close()
				rel := usersRel()
				c := benchChange(rel, valueBytes)
				b.SetBytes(int64(padded(int64(len(appendChange(nil, 1<<20, c))))))
				tx := txn(1)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					if i%10 == 0 {
						if err := w.Begin(tx); err != nil {
							b.Fatal(err)
						}
					}
					if err := w.Change(c); err != nil {
						b.Fatal(err)
					}
					if i%10 == 9 {
						if err := w.Commit(tx); err != nil {
							b.Fatal(err)
						}
					}
					if i%syncEvery == syncEvery-1 {
						if _, err := w.Sync(); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

// BenchmarkRead measures the apply path: decoding a trail of 100-byte-value
// updates (BEGIN, 10 CHANGEs, COMMIT) from the page cache, across segments.
func BenchmarkRead(b *testing.B) {
	const txs = 20000
	dir := b.TempDir()
	w, err := Open(dir, Options{SegmentBytes: 16 << 20})
	if err != nil {
		b.Fatal(err)
	}
	rel := usersRel()
	c := benchChange(rel, 100)
	for n := range txs {
		tx := txn(n)
		_ = w.Begin(tx)
		for range 10 {
			_ = w.Change(c)
		}
		_ = w.Commit(tx)
		if n%100 == 0 {
			if _, err := w.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	segs, _ := Segments(dir)
	var total int64
	for _, s := range segs {
		total += s.Bytes
	}
	records := int64(txs * 12)
	b.SetBytes(total / records)
	b.ReportAllocs()
	ctx := context.Background()
	var r *Reader
	b.ResetTimer()
	for b.Loop() {
		if r == nil {
			if r, err = NewReader(dir, 0, ReaderOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := r.Next(ctx); err != nil {
			if !errors.Is(err, io.EOF) {
				b.Fatal(err)
			}
			r.Close()
			r = nil
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if r != nil {
		r.Close()
	}
}
