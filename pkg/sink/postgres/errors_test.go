package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/sink"
)

func TestClassify(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("doing x: %w", &pgconn.PgError{Code: code, Message: "m"}) }
	tests := []struct {
		err       error
		connLost  bool
		retriable bool
	}{
		{pg("40001"), false, true},
		{pg("40P01"), false, true},
		{pg("57P01"), false, true},
		{pg("57P02"), false, true},
		{pg("57P03"), false, true},
		{pg("53300"), false, true},
		{pg("08006"), false, true},
		{pg("42P01"), false, false},
		{pg("42703"), false, false},
		{pg("23505"), false, false},
		{pg("57014"), false, false},
		{pg("28P01"), true, false},
		{pg("28000"), true, false},
		{pg("XX000"), true, true},
		{io.ErrUnexpectedEOF, false, true},
		{context.Canceled, false, true},
		{errors.New("plan error"), false, false},
		{sink.Retriable(errors.New("x")), false, true},
	}
	for _, tt := range tests {
		err := classify(tt.err, tt.connLost)
		require.Equal(t, tt.retriable, sink.IsRetriable(err), "%v (conn lost %v)", tt.err, tt.connLost)
		require.ErrorIs(t, err, tt.err)
	}
}
