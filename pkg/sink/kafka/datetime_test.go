package kafka

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestAppendTimeFastMatchesDecoded: the fast path writes exactly what the
// pgtype path writes, for every value it accepts, and declines what it
// does not handle.
func TestAppendTimeFastMatchesDecoded(t *testing.T) {
	e := newValues()
	check := func(oid uint32, k valueKind, s string, wantFast bool) {
		t.Helper()
		fast, ok := appendTimeFast(nil, k, []byte(s))
		require.Equal(t, wantFast, ok, "fast path taken for %q (oid %d)", s, oid)
		slow, err := e.appendTimeDecoded(nil, oid, k, []byte(s))
		if !ok {
			return
		}
		require.NoError(t, err, "%q", s)
		require.Equal(t, string(slow), string(fast), "oid %d %q", oid, s)
	}
	for _, s := range []string{
		"2024-05-01 12:00:00.123456+02", "2024-05-01 12:00:00+00", "2024-02-29 23:59:59.9-01",
		"0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+00", "1969-12-31 23:59:59.5+05:30",
		"1900-01-01 00:00:00+00:09:21", "2000-01-01 00:00:00.000001-12:45", "2000-03-01 00:30:00.1+14",
		"2024-05-01 12:00:00.100+00", "2024-05-01 12:00:00.0+00", "2024-05-01 12:00:00.000000+00:00", "2024-05-01 12:00:00.5-00",
	} {
		check(oidTimestamptz, kindTimestamptz, s, true)
	}
	for _, s := range []string{
		"infinity", "-infinity", "2024-05-01 12:00:00 BC+00", "12024-05-01 12:00:00+00", "2024-05-01T12:00:00+00",
		"2024-05-01 12:00:00.1234567+00", "2024-05-01 12:00:00.+00", "2024-02-30 12:00:00+00", "2023-02-29 12:00:00+00",
		"2024-05-01 24:00:00+00", "2024-05-01 12:00:00+0", "2024-05-01 12:00:00+02:3", "2024-05-01 12:00:00",
		"0000-01-01 00:00:00+00",
	} {
		check(oidTimestamptz, kindTimestamptz, s, false)
	}
	for _, s := range []string{"1970-01-01 00:00:01.000001", "1969-12-31 23:59:59", "2262-04-12 00:00:00.5"} {
		check(oidTimestamp, kindTimestamp, s, true)
	}
	for _, s := range []string{"1970-01-01 00:00:01+00", "infinity", "1970-01-01 00:00:01 BC"} {
		check(oidTimestamp, kindTimestamp, s, false)
	}
	for _, s := range []string{"1970-01-02", "1969-12-31", "0001-01-01", "2000-02-29"} {
		check(oidDate, kindDate, s, true)
	}
	for _, s := range []string{"0044-03-15 BC", "infinity", "10000-01-01", "2001-02-29"} {
		check(oidDate, kindDate, s, false)
	}
	for _, s := range []string{"00:00:01.5", "23:59:59.999999", "12:00:00"} {
		check(oidTime, kindTime, s, true)
	}
	for _, s := range []string{"24:00:00", "12:00", "12:00:00.1234567"} {
		check(oidTime, kindTime, s, false)
	}

	// Random values in every precision and offset PostgreSQL prints.
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		sec := r.Int64N(253402300800-(-62135596800)) + -62135596800 // 0001-01-01 .. 9999-12-31 UTC
		usec := r.IntN(1000000)
		tm := time.Unix(sec, int64(usec)*1000).UTC()
		frac := ""
		if usec != 0 {
			frac = fmt.Sprintf(".%06d", usec)
			for frac[len(frac)-1] == '0' {
				frac = frac[:len(frac)-1]
			}
		}
		ts := tm.Format("2006-01-02 15:04:05") + frac
		if tm.Year() < 10000 {
			check(oidTimestamp, kindTimestamp, ts, true)
			check(oidDate, kindDate, ts[:10], true)
			check(oidTime, kindTime, ts[11:], true)
		}
		off := (r.IntN(28*60) - 14*60) * 60
		if r.IntN(4) == 0 {
			off += r.IntN(60)
		}
		local := tm.Add(time.Duration(off) * time.Second)
		if local.Year() < 1 || local.Year() > 9999 {
			continue
		}
		sign, a := '+', off
		if off < 0 {
			sign, a = '-', -off
		}
		o := fmt.Sprintf("%c%02d", sign, a/3600)
		if a%3600 != 0 {
			o += fmt.Sprintf(":%02d", a%3600/60)
			if a%60 != 0 {
				o += fmt.Sprintf(":%02d", a%60)
			}
		}
		check(oidTimestamptz, kindTimestamptz, local.Format("2006-01-02 15:04:05")+frac+o, true)
	}
}

func BenchmarkAppendTimestamptz(b *testing.B) {
	e := newValues()
	s := []byte("2026-11-30 08:02:45.123456+00")
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		dst, _ = e.appendTime(dst[:0], oidTimestamptz, kindTimestamptz, s)
	}
}
