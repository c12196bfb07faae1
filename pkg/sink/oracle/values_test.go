package oracle

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckNumber(t *testing.T) {
	anyNumber := targetColumn{DataType: "NUMBER", Precision: -1, Scale: -1}
	money := targetColumn{DataType: "NUMBER", Precision: 12, Scale: 2}
	for _, tc := range []struct {
		in   string
		tgt  targetColumn
		want string // "" = fits
	}{
		{"0", anyNumber, ""},
		{"-0.000000001", anyNumber, ""},
		{"12345678901234567890123456789012345678", anyNumber, ""},                         // 38 digits
		{"123456789012345678901234567890123456789", anyNumber, "39 significant digits"},   // 39
		{"1000000000000000000000000000000000000000000", anyNumber, ""},                    // 1e42: one digit
		{"0.00000000000000000000000000000000000000001234", anyNumber, ""},                 // leading zeros do not count
		{"123456789012345678901234567890.0123456789", anyNumber, "40 significant digits"}, // the zoo's numeric(40,10)
		{"1.10", money, ""}, // trailing zeros do not count
		{"1.005", money, "3 fraction digits, NUMBER(12,2) would round it"}, // silent rounding refused
		{"NaN", anyNumber, "NaN has no Oracle NUMBER"},
		{"-Infinity", anyNumber, "-Infinity has no Oracle NUMBER"},
		{"1e5", anyNumber, "is not a number"},
		{".", anyNumber, "is not a number"},
		{"1.2.3", anyNumber, "is not a number"},
	} {
		err := checkNumber([]byte(tc.in), tc.tgt)
		if tc.want == "" {
			require.NoError(t, err, tc.in)
			continue
		}
		require.ErrorContains(t, err, tc.want, tc.in)
		require.True(t, errors.Is(err, errValue))
	}
}
