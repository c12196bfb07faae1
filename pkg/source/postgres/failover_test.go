package postgres

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

func TestParseForkPoint(t *testing.T) {
	history := []byte("1\t0/3000158\tno recovery target specified\n\n2\t0/5A00000\tno recovery target specified\n")
	for _, tc := range []struct {
		from int32
		want change.LSN
		ok   bool
	}{
		{1, 0x3000158, true},
		{2, 0x5A00000, true},
		{3, 0, false},
	} {
		got, ok, err := parseForkPoint(history, tc.from)
		require.NoError(t, err)
		require.Equal(t, tc.ok, ok, "timeline %d", tc.from)
		require.Equal(t, tc.want, got, "timeline %d", tc.from)
	}
	_, _, err := parseForkPoint([]byte("x\t0/1\n"), 1)
	require.ErrorContains(t, err, `timeline history line "x\t0/1"`)
	_, _, err = parseForkPoint([]byte("1\tnot-an-lsn\n"), 1)
	require.Error(t, err)
}

func TestCreateSlotCommand(t *testing.T) {
	require.Equal(t, `CREATE_REPLICATION_SLOT "cdcd" LOGICAL pgoutput NOEXPORT_SNAPSHOT`, createSlotCommand("cdcd", false))
	require.Equal(t, `CREATE_REPLICATION_SLOT "cdcd" LOGICAL pgoutput (SNAPSHOT 'nothing', FAILOVER)`, createSlotCommand("cdcd", true))
}
