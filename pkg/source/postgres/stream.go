package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// MessageKind tells what Receive returned.
type MessageKind uint8

// The stream message kinds.
const (
	// Timeout means the context's deadline passed with nothing received: not
	// an error, the caller's chance to do timed work.
	Timeout MessageKind = iota
	// XLogData carries one pgoutput message in Data.
	XLogData
	// Keepalive carries the server's WAL end and whether it wants a reply.
	Keepalive
)

// Message is one message of the replication stream. Data aliases the
// connection's read buffer: it is valid only until the next Receive.
type Message struct {
	Kind         MessageKind
	WALStart     change.LSN
	ServerWALEnd change.LSN
	// ServerClock is when the server sent an XLogData message, by its
	// clock, in PostgreSQL's microseconds since 2000-01-01 (decode.Time
	// converts it): kept raw, as most messages never need it.
	ServerClock    int64
	ReplyRequested bool
	Data           []byte
}

// Receive waits for the next stream message until deadline. A passed
// deadline returns a Timeout message and no error: the connection stays
// usable (pgconn keeps a partially read message across read timeouts).
//
// The deadline is set on the socket rather than through a context: pgconn
// starts a goroutine per call for a cancellable context, which costs more
// than decoding a row on the hot path. It is armed only when a read system
// call is due (see batchReader), not per message. Interrupt wakes a blocked
// Receive.
func (s *Source) Receive(deadline time.Time) (Message, error) {
	s.sock.want = deadline
	if !s.sock.streaming {
		// Not streaming yet (no StartStream): no batching, plain deadline.
		if err := s.repl.Conn().SetReadDeadline(deadline); err != nil {
			return Message{}, fmt.Errorf("receive from source: %w", err)
		}
	}
	if s.interrupted.Load() {
		return Message{Kind: Timeout}, nil
	}
	raw, err := s.repl.ReceiveMessage(context.Background())
	if err != nil {
		if pgconn.Timeout(err) {
			return Message{Kind: Timeout}, nil
		}
		return Message{}, classify(fmt.Errorf("receive from source: %w", err))
	}
	switch m := raw.(type) {
	case *pgproto3.CopyData:
		if len(m.Data) == 0 {
			return Message{}, fmt.Errorf("receive from source: empty CopyData")
		}
		switch m.Data[0] {
		case pglogrepl.XLogDataByteID:
			b := m.Data[1:]
			if len(b) < 24 {
				return Message{}, fmt.Errorf("receive from source: XLogData of %d bytes", len(b))
			}
			return Message{
				Kind:         XLogData,
				WALStart:     change.LSN(binary.BigEndian.Uint64(b)),
				ServerWALEnd: change.LSN(binary.BigEndian.Uint64(b[8:])),
				ServerClock:  int64(binary.BigEndian.Uint64(b[16:])),
				Data:         b[24:],
			}, nil
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			k, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
			if err != nil {
				return Message{}, fmt.Errorf("receive from source: %w", err)
			}
			return Message{Kind: Keepalive, ServerWALEnd: change.LSN(k.ServerWALEnd), ReplyRequested: k.ReplyRequested}, nil
		default:
			return Message{}, fmt.Errorf("receive from source: unknown CopyData message %q", m.Data[0])
		}
	case *pgproto3.ErrorResponse:
		return Message{}, classify(fmt.Errorf("source replication error: %w", pgconn.ErrorResponseToPgError(m)))
	case *pgproto3.CopyDone:
		return Message{}, fmt.Errorf("source ended the replication stream")
	default:
		return Message{}, fmt.Errorf("receive from source: unexpected message %T", raw)
	}
}

// Interrupt makes a blocked or later Receive return a Timeout at once. It is
// safe to call from another goroutine (e.g. context.AfterFunc on shutdown).
func (s *Source) Interrupt() {
	s.interrupted.Store(true)
	// The socket reader may keep an armed deadline without re-arming;
	// this one then fires at once (it checks the flag after arming).
	_ = s.repl.Conn().SetReadDeadline(time.Now())
}

// SendStatus sends a standby status update. flush is the position the
// server may discard WAL up to: only what is durable in the trail. write
// and apply are set to the same value; flush is always set explicitly
// (pglogrepl would copy write into a zero flush).
func (s *Source) SendStatus(ctx context.Context, flush change.LSN, replyRequested bool) error {
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(flush),
		WALFlushPosition: pglogrepl.LSN(flush),
		WALApplyPosition: pglogrepl.LSN(flush),
		ClientTime:       time.Now(),
		ReplyRequested:   replyRequested,
	})
	if err != nil {
		return classify(fmt.Errorf("send status update to source: %w", err))
	}
	return nil
}
