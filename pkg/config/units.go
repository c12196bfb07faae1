package config

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
)

// Duration is a time.Duration written as "10s", "250ms" or "off" (negative:
// disabled).
type Duration time.Duration

// UnmarshalYAML implements goccy/go-yaml's NodeUnmarshaler.
func (d *Duration) UnmarshalYAML(n ast.Node) error {
	v, err := ParseDuration(scalar(n))
	if err != nil {
		return &valueError{node: n, err: err}
	}
	*d = v
	return nil
}

var durationSyntax = regexp.MustCompile(`^([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))*$`)

// ParseDuration parses "10s", "1m30s", "250ms" or "off".
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "off" || s == "false" {
		return Duration(-1), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		if durationSyntax.MatchString(s) {
			// Well formed, so the only failure left is overflow.
			return 0, fmt.Errorf("duration %q is too long: at most about 290 years", s)
		}
		return 0, fmt.Errorf("invalid duration %q: use a number with a unit, e.g. 10s or 250ms, or off", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	return Duration(v), nil
}

// ByteSize is a size in bytes written as a whole number with an optional
// unit: 16MiB, 64MB, 512KiB, 1GiB.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"TB", 1000 * 1000 * 1000 * 1000},
	{"B", 1},
}

var errSizeSyntax = errors.New("use a whole number with an optional unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB), e.g. 64MiB")

// ParseByteSize parses "16MiB" and the like. Fractions ("1.5GiB": write
// 1536MiB), negative sizes and sizes beyond 8 EiB are errors.
func ParseByteSize(in string) (ByteSize, error) {
	s := strings.TrimSpace(in)
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	if strings.ContainsAny(s, ".eE") {
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			return 0, fmt.Errorf("size %q is not a whole number: write it in a smaller unit (1.5GiB is 1536MiB)", in)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("size %q is too large: at most 8 EiB", in)
		}
		return 0, fmt.Errorf("invalid size %q: %w", in, errSizeSyntax)
	}
	if n < 0 {
		return 0, fmt.Errorf("size %q must not be negative", in)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large: at most 8 EiB", in)
	}
	return ByteSize(n * mult), nil
}

// UnmarshalYAML implements goccy/go-yaml's NodeUnmarshaler.
func (b *ByteSize) UnmarshalYAML(n ast.Node) error {
	v, err := ParseByteSize(scalar(n))
	if err != nil {
		return &valueError{node: n, err: err}
	}
	*b = v
	return nil
}

// scalar is a scalar node's text as written (after ${…} expansion); a
// mapping or sequence gives its YAML text, which then fails to parse.
func scalar(n ast.Node) string {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value
	case ast.ScalarNode:
		if tk := v.GetToken(); tk != nil {
			return tk.Value
		}
	}
	return n.String()
}
