package preflight

import (
	"testing"

	"github.com/stretchr/testify/require"

	pgsink "github.com/cdcd-io/cdcd/pkg/sink/postgres"
)

func TestCitusProblem(t *testing.T) {
	cfg := pgsink.CitusConfig{Distribution: map[string]string{"s.orders": "tenant", "s.ref": "id"}, Reference: []string{"s.countries"}}
	for _, tc := range []struct {
		name, table string
		p           citusPlacement
		want        string
	}{
		{"distributed on a key column", "s.items", citusPlacement{kind: 'h', column: "tenant", key: []string{"tenant", "id"}}, ""},
		{"configured column", "s.orders", citusPlacement{kind: 'h', column: "tenant", key: []string{"tenant", "id"}}, ""},
		{"reference", "s.countries", citusPlacement{kind: 'n'}, ""},
		{"local table", "s.items", citusPlacement{}, "s.items is a local table on the coordinator, not distributed"},
		{"column outside the key", "s.items", citusPlacement{kind: 'h', column: "region", key: []string{"id"}}, "s.items is distributed by region, which is not in its primary key (id)"},
		{"no key", "s.items", citusPlacement{kind: 'h', column: "id"}, "s.items has no primary key"},
		{"other column than configured", "s.orders", citusPlacement{kind: 'h', column: "id", key: []string{"tenant", "id"}}, "s.orders is distributed by id, the citus section says tenant"},
		{"reference but configured distributed", "s.ref", citusPlacement{kind: 'n'}, "s.ref is a reference table, the citus section distributes it by id"},
		{"distributed but configured reference", "s.countries", citusPlacement{kind: 'h', column: "id", key: []string{"id"}}, "the citus section makes it a reference table"},
		{"append distribution", "s.items", citusPlacement{kind: 'a'}, `distributed by method 'a'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := citusProblem(tc.table, tc.p, cfg)
			if tc.want == "" {
				require.Empty(t, got)
			} else {
				require.Contains(t, got, tc.want)
			}
		})
	}
}
