package kafka

import (
	"strconv"
	"time"
)

// The fast paths below convert PostgreSQL's ISO text output of date/time
// types (DateStyle ISO, 4-digit AD years: what pgoutput sends for almost
// every value) straight to the JSON form, without decoding into an
// interface value. Anything else (BC dates, 5-digit years, other
// DateStyles, malformed text) returns ok = false and takes the pgtype path,
// which has the final word on what is valid.

// appendTimeFast appends the JSON form of s for the date/time kinds, or
// returns ok = false.
func appendTimeFast(dst []byte, k valueKind, s []byte) ([]byte, bool) {
	switch k {
	case kindTimestamptz:
		ts, n, ok := parseTimestamp(s)
		if !ok {
			return dst, false
		}
		off, ok := parseOffset(s[n:])
		if !ok {
			return dst, false
		}
		dst = append(dst, '"')
		if off == 0 { // already UTC: the text is RFC 3339 but for 'T' and 'Z'
			dst = append(dst, s[:10]...)
			dst = append(dst, 'T')
			frac := s[11:n]
			for len(frac) > 8 && (frac[len(frac)-1] == '0' || frac[len(frac)-1] == '.') {
				frac = frac[:len(frac)-1]
			}
			dst = append(dst, frac...)
			return append(dst, 'Z', '"'), true
		}
		t := time.Date(ts.year, time.Month(ts.month), ts.day, ts.hour, ts.min, ts.sec, ts.nsec, time.UTC)
		t = t.Add(-time.Duration(off) * time.Second)
		dst = t.AppendFormat(dst, time.RFC3339Nano)
		return append(dst, '"'), true
	case kindTimestamp:
		ts, n, ok := parseTimestamp(s)
		if !ok || n != len(s) {
			return dst, false
		}
		t := time.Date(ts.year, time.Month(ts.month), ts.day, ts.hour, ts.min, ts.sec, ts.nsec, time.UTC)
		return strconv.AppendInt(dst, t.UnixMicro(), 10), true
	case kindDate:
		y, m, d, ok := parseDate(s)
		if !ok || len(s) != 10 {
			return dst, false
		}
		t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
		return strconv.AppendInt(dst, floorDiv(t.Unix(), 86400), 10), true
	case kindTime:
		h, mi, sec, nsec, n, ok := parseClock(s)
		if !ok || n != len(s) {
			return dst, false
		}
		us := (int64(h)*3600+int64(mi)*60+int64(sec))*1e6 + int64(nsec/1000)
		return strconv.AppendInt(dst, us, 10), true
	}
	return dst, false
}

type stamp struct{ year, month, day, hour, min, sec, nsec int }

// parseTimestamp parses "YYYY-MM-DD HH:MM:SS[.ffffff]" at the start of s
// and returns how many bytes it used.
func parseTimestamp(s []byte) (ts stamp, n int, ok bool) {
	if len(s) < 19 || s[10] != ' ' {
		return ts, 0, false
	}
	if ts.year, ts.month, ts.day, ok = parseDate(s[:10]); !ok {
		return ts, 0, false
	}
	if ts.hour, ts.min, ts.sec, ts.nsec, n, ok = parseClock(s[11:]); !ok {
		return ts, 0, false
	}
	return ts, 11 + n, true
}

// parseDate parses "YYYY-MM-DD" (s must be at least 10 bytes).
func parseDate(s []byte) (y, m, d int, ok bool) {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return 0, 0, 0, false
	}
	y, ok1 := digits(s[0:4])
	m, ok2 := digits(s[5:7])
	d, ok3 := digits(s[8:10])
	if !ok1 || !ok2 || !ok3 || y < 1 || m < 1 || m > 12 || d < 1 || d > daysIn(m, y) {
		return 0, 0, 0, false
	}
	return y, m, d, true
}

// parseClock parses "HH:MM:SS[.f…]" (1 to 6 fraction digits) at the start
// of s and returns how many bytes it used.
func parseClock(s []byte) (h, mi, sec, nsec, n int, ok bool) {
	if len(s) < 8 || s[2] != ':' || s[5] != ':' {
		return 0, 0, 0, 0, 0, false
	}
	h, ok1 := digits(s[0:2])
	mi, ok2 := digits(s[3:5])
	sec, ok3 := digits(s[6:8])
	if !ok1 || !ok2 || !ok3 || h > 23 || mi > 59 || sec > 59 {
		return 0, 0, 0, 0, 0, false
	}
	n = 8
	if n < len(s) && s[n] == '.' {
		n++
		start := n
		for n < len(s) && n-start < 6 && s[n] >= '0' && s[n] <= '9' {
			nsec = nsec*10 + int(s[n]-'0')
			n++
		}
		if n == start || (n < len(s) && s[n] >= '0' && s[n] <= '9') {
			return 0, 0, 0, 0, 0, false // no digit, or more than 6
		}
		for i := n - start; i < 9; i++ {
			nsec *= 10
		}
	}
	return h, mi, sec, nsec, n, true
}

// parseOffset parses a whole UTC offset "+HH", "+HH:MM" or "+HH:MM:SS"
// (or '-') into seconds east of UTC.
func parseOffset(s []byte) (int, bool) {
	if len(s) != 3 && len(s) != 6 && len(s) != 9 {
		return 0, false
	}
	sign := 1
	switch s[0] {
	case '+':
	case '-':
		sign = -1
	default:
		return 0, false
	}
	h, ok := digits(s[1:3])
	if !ok {
		return 0, false
	}
	off := h * 3600
	for i := 3; i < len(s); i += 3 {
		v, ok := digits(s[i+1 : i+3])
		if s[i] != ':' || !ok || v > 59 {
			return 0, false
		}
		if i == 3 {
			off += v * 60
		} else {
			off += v
		}
	}
	return sign * off, true
}

// digits parses a run of ASCII digits.
func digits(s []byte) (int, bool) {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(m, y int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
