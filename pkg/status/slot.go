package status

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// Querier is what QuerySlot needs of a connection (*pgx.Conn has it).
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// SlotState is a Slot with its positions parsed, for computations.
type SlotState struct {
	Slot
	Server, ConfirmedFlush, Restart change.LSN
}

// slotQuery reads the server position and the slot in one round trip. The
// slot row goes through to_jsonb so one query fits every version: conflicting
// exists from PG16, invalidation_reason from PG17. Needs no privilege beyond
// CONNECT.
const slotQuery = `SELECT
  (CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_replay_lsn(), pg_last_wal_receive_lsn())
        ELSE pg_current_wal_lsn() END)::text,
  (SELECT to_jsonb(s) FROM pg_replication_slots s WHERE s.slot_name = $1)::text`

// QuerySlot reads the source's WAL position and the slot's state.
func QuerySlot(ctx context.Context, q Querier, slot string) (SlotState, error) {
	st := SlotState{Slot: Slot{Name: slot}}
	var server, row *string
	if err := q.QueryRow(ctx, slotQuery, slot).Scan(&server, &row); err != nil {
		return st, fmt.Errorf("read slot %s: %w", slot, err)
	}
	if server != nil {
		st.ServerLSN = *server
		st.Server, _ = change.ParseLSN(*server)
	}
	if row == nil {
		return st, nil
	}
	var r struct {
		Active             bool        `json:"active"`
		ConfirmedFlushLSN  *string     `json:"confirmed_flush_lsn"`
		RestartLSN         *string     `json:"restart_lsn"`
		WALStatus          *string     `json:"wal_status"`
		SafeWALSize        json.Number `json:"safe_wal_size"`
		Conflicting        *bool       `json:"conflicting"`
		InvalidationReason *string     `json:"invalidation_reason"`
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(*row)))
	dec.UseNumber()
	if err := dec.Decode(&r); err != nil {
		return st, fmt.Errorf("read slot %s: %w", slot, err)
	}
	st.Exists, st.Active = true, r.Active
	if r.ConfirmedFlushLSN != nil {
		st.ConfirmedFlushLSN = *r.ConfirmedFlushLSN
		st.ConfirmedFlush, _ = change.ParseLSN(*r.ConfirmedFlushLSN)
	}
	if r.RestartLSN != nil {
		st.RestartLSN = *r.RestartLSN
		st.Restart, _ = change.ParseLSN(*r.RestartLSN)
	}
	if r.WALStatus != nil {
		st.WALStatus = *r.WALStatus
	}
	if r.SafeWALSize != "" {
		if n, err := r.SafeWALSize.Int64(); err == nil {
			st.SafeWALBytes = &n
		}
	}
	if st.Restart != 0 && st.Server > st.Restart {
		st.RetainedWALBytes = int64(st.Server - st.Restart)
	}
	switch {
	case r.InvalidationReason != nil && *r.InvalidationReason != "":
		st.Invalidated = *r.InvalidationReason
	case r.Conflicting != nil && *r.Conflicting:
		st.Invalidated = "conflict with recovery on the standby"
	case st.WALStatus == "lost":
		st.Invalidated = "wal_status=lost: required WAL was removed (max_slot_wal_keep_size)"
	}
	return st, nil
}
