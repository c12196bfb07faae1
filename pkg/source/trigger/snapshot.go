package trigger

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Snapshot is a position of the trigger source: a PostgreSQL pg_snapshot,
// the set of transactions whose effects it sees. A transaction id x is
// visible when x < Xmin, or when x < Xmax and x is not in Xip.
//
// The zero Snapshot is "no position yet"; [Start] or [Export] gives the
// first one. The text form (String, MarshalText) is PostgreSQL's
// "xmin:xmax:xip1,xip2,...", which is what the trail should store.
type Snapshot struct {
	// Xmin is the oldest transaction still running when the snapshot was
	// taken: every id below it is finished.
	Xmin uint64
	// Xmax is one past the newest finished transaction: ids from it on had
	// not finished.
	Xmax uint64
	// Xip lists the ids in [Xmin, Xmax) still in progress, ascending.
	Xip []uint64
}

// IsZero reports whether s is the zero Snapshot (no position).
func (s Snapshot) IsZero() bool { return s.Xmin == 0 && s.Xmax == 0 && len(s.Xip) == 0 }

// Visible reports whether the transaction xid had finished when s was taken,
// as pg_visible_in_snapshot does.
func (s Snapshot) Visible(xid uint64) bool {
	if xid < s.Xmin {
		return true
	}
	if xid >= s.Xmax {
		return false
	}
	_, found := slices.BinarySearch(s.Xip, xid)
	return !found
}

// String formats s as PostgreSQL's pg_snapshot text, "xmin:xmax:xip,...".
func (s Snapshot) String() string {
	var b strings.Builder
	b.WriteString(strconv.FormatUint(s.Xmin, 10))
	b.WriteByte(':')
	b.WriteString(strconv.FormatUint(s.Xmax, 10))
	b.WriteByte(':')
	for i, x := range s.Xip {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(x, 10))
	}
	return b.String()
}

// MarshalText is String as bytes.
func (s Snapshot) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses the text form.
func (s *Snapshot) UnmarshalText(b []byte) error {
	p, err := ParseSnapshot(string(b))
	if err != nil {
		return err
	}
	*s = p
	return nil
}

// ParseSnapshot parses PostgreSQL's pg_snapshot text form
// "xmin:xmax:xip1,xip2,..." and checks it is well formed (xmin <= each
// xip < xmax, ascending), as the server's input function does.
func ParseSnapshot(text string) (Snapshot, error) {
	parts := strings.Split(text, ":")
	if len(parts) != 3 {
		return Snapshot{}, fmt.Errorf("parse snapshot %q: want xmin:xmax:xip,...", text)
	}
	var s Snapshot
	var err error
	if s.Xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return Snapshot{}, fmt.Errorf("parse snapshot %q: xmin: %w", text, err)
	}
	if s.Xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return Snapshot{}, fmt.Errorf("parse snapshot %q: xmax: %w", text, err)
	}
	if s.Xmin > s.Xmax {
		return Snapshot{}, fmt.Errorf("parse snapshot %q: xmin is past xmax", text)
	}
	if parts[2] != "" {
		for _, f := range strings.Split(parts[2], ",") {
			x, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return Snapshot{}, fmt.Errorf("parse snapshot %q: xip: %w", text, err)
			}
			if x < s.Xmin || x >= s.Xmax || (len(s.Xip) > 0 && x <= s.Xip[len(s.Xip)-1]) {
				return Snapshot{}, fmt.Errorf("parse snapshot %q: xip %d out of order or outside [xmin, xmax)", text, x)
			}
			s.Xip = append(s.Xip, x)
		}
	}
	return s, nil
}
