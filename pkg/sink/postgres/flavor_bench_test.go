package postgres

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// BenchmarkApplyFlavors applies batches of benchRows fresh inserts, then
// the same rows updated, through each flavor on plain PostgreSQL (the DSQL
// flavor splits each batch into transactions of 2,499 rows; citus sends a
// statement per key):
//
//	go test ./pkg/sink/postgres -run '^$' -bench ApplyFlavors -benchtime 10x
func BenchmarkApplyFlavors(b *testing.B) {
	for _, flavor := range []Flavor{FlavorPostgres, FlavorDSQL, FlavorCitus} {
		b.Run(string(flavor), func(b *testing.B) {
			e := newEnv(b, benchDDL)
			cfg := Config{Name: "bench", DSN: e.dsn, Flavor: flavor,
				tokenFunc: func(context.Context, *pgx.ConnConfig) (string, error) { return "t", nil }}
			s, err := New(context.Background(), cfg, nil)
			require.NoError(b, err)
			defer s.Close(context.Background())
			r := benchRel()
			b.ResetTimer()
			for i := range b.N {
				first := (i / 2) * benchRows
				mk := func(id int) *change.Change { return benchInsert(r, id) }
				if i%2 == 1 {
					mk = func(id int) *change.Change { c := benchInsert(r, id); c.Op = change.OpUpdate; return c }
				}
				tx := sink.Tx{Tx: &change.Tx{FinalLSN: change.LSN(i + 1)}, Changes: benchBatch(first, mk)}
				require.NoError(b, s.Apply(context.Background(), &sink.Batch{Txs: []sink.Tx{tx}, Position: pos(uint64(i + 1))}))
			}
			reportRows(b)
		})
	}
}
