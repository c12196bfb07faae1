package dynamodb

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

func TestExactNumber(t *testing.T) {
	for s, want := range map[string]bool{
		"0": true, "-0": false, "-0.0": false, "0.000": true, "42": true, "-9223372036854775808": true, "1234.5600": true,
		"12345678901234567890123456789012345678":    true,  // 38 digits
		"123456789012345678901234567890123456789":   false, // 39
		"1234567890123456789012345678901234567800":  true,  // 38 significant, trailing zeros
		"123456789012345678901234567890.0123456789": false, // 40
		"0.00000000000000000000000000000000000001":  true,
		"NaN": false, "Infinity": false, "-Infinity": false, "": false, "-": false, "1.2.3": false, "abc": false,
		"1e+30": true, "1.5E-7": true, "1e125": true, "1e126": false, "1e-130": true, "1e-131": false,
		"1.7976931348623157e+308": false, "-1e-10": true, "-0.000000001": true,
	} {
		require.Equal(t, want, exactNumber([]byte(s)), "%q", s)
	}
}

func TestISOTimes(t *testing.T) {
	require.Equal(t, "2024-02-29T13:14:15.123456+02:00", isoTimestamp([]byte("2024-02-29 13:14:15.123456+02"), true))
	require.Equal(t, "2024-02-29T13:14:15+05:30", isoTimestamp([]byte("2024-02-29 13:14:15+05:30"), true))
	require.Equal(t, "2024-02-29T13:14:15.123456", isoTimestamp([]byte("2024-02-29 13:14:15.123456"), false))
	require.Equal(t, "infinity", isoTimestamp([]byte("infinity"), true))
	require.Equal(t, "4713-01-01 00:00:00+00 BC", isoTimestamp([]byte("4713-01-01 00:00:00+00 BC"), true))
	require.Equal(t, "13:14:15+05:00", string(isoOffset([]byte("13:14:15+05"))))
	require.Equal(t, "13:14:15-15:59", string(isoOffset([]byte("13:14:15-15:59"))))
}

func TestValues(t *testing.T) {
	cv := newConverter(false)
	text := func(oid uint32, s string) types.AttributeValue {
		t.Helper()
		v, err := cv.value(oid, change.Text(s))
		require.NoError(t, err)
		return v
	}
	require.Equal(t, &types.AttributeValueMemberN{Value: "9223372036854775807"}, text(oidInt8, "9223372036854775807"))
	require.Equal(t, &types.AttributeValueMemberS{Value: "NaN"}, text(oidNumeric, "NaN"))
	require.Equal(t, &types.AttributeValueMemberS{Value: "1234567890123456789012345678901234567890"}, text(oidNumeric, "1234567890123456789012345678901234567890"))
	require.Equal(t, &types.AttributeValueMemberS{Value: "-Infinity"}, text(oidFloat8, "-Infinity"))
	require.Equal(t, &types.AttributeValueMemberBOOL{Value: true}, text(oidBool, "t"))
	require.Equal(t, &types.AttributeValueMemberB{Value: []byte{0, 0xff}}, text(oidBytea, `\x00ff`))
	require.Equal(t, &types.AttributeValueMemberB{Value: []byte{}}, text(oidBytea, `\x`))
	v, err := cv.value(oidInt4, change.Null)
	require.NoError(t, err)
	require.Equal(t, &types.AttributeValueMemberNULL{Value: true}, v)
	require.Equal(t, &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
		"a": &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberN{Value: "1"}, &types.AttributeValueMemberN{Value: "2.50"},
			&types.AttributeValueMemberS{Value: "x"}, &types.AttributeValueMemberNULL{Value: true}, &types.AttributeValueMemberBOOL{Value: false}}},
	}}, text(oidJSONB, `{"a": [1, 2.50, "x", null, false]}`))
	// A number N cannot hold keeps the whole document as text.
	require.Equal(t, &types.AttributeValueMemberS{Value: `{"b": 1e400}`}, text(oidJSONB, `{"b": 1e400}`))
	require.Equal(t, &types.AttributeValueMemberS{Value: `{"a":1}`}, func() types.AttributeValue {
		v, err := newConverter(true).value(oidJSON, change.Text(`{"a":1}`))
		require.NoError(t, err)
		return v
	}())
	require.Equal(t, &types.AttributeValueMemberL{Value: []types.AttributeValue{
		&types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberN{Value: "1"}, &types.AttributeValueMemberNULL{Value: true}}},
		&types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberN{Value: "3"}, &types.AttributeValueMemberN{Value: "4"}}},
	}}, text(1007, "{{1,NULL},{3,4}}")) // int4[]
	require.Equal(t, &types.AttributeValueMemberL{Value: []types.AttributeValue{
		&types.AttributeValueMemberS{Value: "a b"}, &types.AttributeValueMemberS{Value: `q"z`}, &types.AttributeValueMemberS{Value: ""},
	}}, text(1009, `{"a b","q\"z",""}`)) // text[]
	require.Equal(t, &types.AttributeValueMemberS{Value: "2024-02-29T13:14:15+00:00"}, text(oidTimestamptz, "2024-02-29 13:14:15+00"))
	require.Equal(t, &types.AttributeValueMemberS{Value: "1 day"}, text(1186, "1 day")) // interval: its text
}
