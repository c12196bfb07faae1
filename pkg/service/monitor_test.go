package service

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/status"
)

func TestGuardLevels(t *testing.T) {
	m := &monitor{cfg: GuardConfig{WarnBytes: 100, AlertBytes: 1000}.defaults(), log: slog.New(slog.DiscardHandler)}
	slot := func(retained int64, walStatus, invalid string) status.SlotState {
		return status.SlotState{Slot: status.Slot{Exists: true, RetainedWALBytes: retained, WALStatus: walStatus, Invalidated: invalid}}
	}
	for _, tc := range []struct {
		st   status.SlotState
		want Level
	}{
		{status.SlotState{}, LevelOK}, // not created yet
		{slot(99, "reserved", ""), LevelOK},
		{slot(100, "reserved", ""), LevelWarn},
		{slot(1000, "extended", ""), LevelAlert},
		{slot(5, "unreserved", ""), LevelAlert},
		{slot(0, "lost", "wal_status=lost"), LevelLost},
		{status.SlotState{}, LevelLost}, // dropped after it was seen
	} {
		got, why := m.evaluate(tc.st)
		require.Equal(t, tc.want, got, "%+v: %s", tc.st, why)
	}
}

func TestSnapshotBeforeFirstRead(t *testing.T) {
	m := &monitor{slot: "cdcd"}
	st, readErr, _ := m.snapshot()
	require.False(t, st.Exists)
	require.Equal(t, notRead, readErr, "not read yet is not \"missing\"")
	m.state, m.read1 = status.SlotState{Slot: status.Slot{Exists: true}}, true
	_, readErr, _ = m.snapshot()
	require.Empty(t, readErr)
}

// TestGuardOff: with no slot (the trigger source) the guard never reads
// one, never stops the pipeline, and reports why there is no slot.
func TestGuardOff(t *testing.T) {
	m := &monitor{cfg: GuardConfig{Off: true}, slot: "cdcd"}
	done := make(chan struct{})
	go func() {
		m.run(context.Background(), func(err error) { t.Errorf("guard stopped the pipeline: %v", err) })
		close(done)
	}()
	<-done // returns at once, without a context to end it
	m.refresh(context.Background())
	_, readErr, level := m.snapshot()
	require.Equal(t, noSlot, readErr)
	require.Equal(t, LevelOK, level)
}

func TestLagSeconds(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := &monitor{samples: []sample{{t0, 100}, {t0.Add(time.Second), 200}, {t0.Add(2 * time.Second), 300}}}
	now := t0.Add(5 * time.Second)
	require.Equal(t, 0.0, m.lagSeconds(300, now), "at the newest position")
	require.Equal(t, 3.0, m.lagSeconds(250, now), "the source passed 250 at t0+2s")
	require.Equal(t, 5.0, m.lagSeconds(50, now), "older than the history: at least its span")
}

func TestTxLog(t *testing.T) {
	var l txLog
	require.Equal(t, int64(0), l.behind(0))
	for i := 1; i <= 10; i++ {
		l.add(change.LSN(i*100), uint64(i*3)) // 3 transactions per group commit
	}
	require.Equal(t, int64(0), l.behind(1000))
	require.Equal(t, int64(3), l.behind(900))
	require.Equal(t, int64(30), l.behind(50), "before the first sample: all captured by this process")
	for i := 11; i <= maxTxSamples+10; i++ {
		l.add(change.LSN(i*100), uint64(i*3))
	}
	require.LessOrEqual(t, len(l.s), maxTxSamples)
	last := change.LSN((maxTxSamples + 10) * 100)
	require.Equal(t, int64(0), l.behind(last))
	require.InDelta(t, 6, l.behind(last-200), 3, "thinned history stays close")
}
