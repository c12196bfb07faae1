package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pgsink "github.com/cdcd-io/cdcd/pkg/sink/postgres"
)

const flavorBase = "source: {dsn: x}\ntrail: {dir: /t}\nsinks:\n  - name: pg\n    kind: postgres\n    dsn: postgres://admin@abc.dsql.us-east-1.on.aws/postgres?sslmode=verify-full\n"

func TestFlavorSettings(t *testing.T) {
	f, err := Parse([]byte(flavorBase + `    flavor: aurora-dsql
    dsql: {region: eu-west-1, max_tx_rows: 2000, max_tx_bytes: 4MiB, max_tx_duration: 2m, conn_max_age: 30m, max_retries: 5}
`))
	require.NoError(t, err)
	c := PostgresSinkConfig(f.Sinks[0])
	require.Equal(t, pgsink.FlavorDSQL, c.Flavor)
	require.Equal(t, pgsink.DSQLConfig{Region: "eu-west-1", MaxTxRows: 2000, MaxTxBytes: 4 << 20, MaxTxDuration: 2 * time.Minute,
		ConnMaxAge: 30 * time.Minute, MaxRetries: 5}, c.DSQL)
	require.Equal(t, pgsink.FlavorDSQL, f.PreflightConfig().Sinks[0].Postgres.Flavor)

	f, err = Parse([]byte(flavorBase + `    flavor: citus
    citus:
      distribution: {public.orders: customer_id}
      reference: [public.countries]
      reference_max_rows: -1
      colocate_with: {public.orders: public.customers}
`))
	require.NoError(t, err)
	c = PostgresSinkConfig(f.Sinks[0])
	require.Equal(t, pgsink.FlavorCitus, c.Flavor)
	require.Equal(t, pgsink.CitusConfig{Distribution: map[string]string{"public.orders": "customer_id"}, Reference: []string{"public.countries"},
		ReferenceMaxRows: -1, ColocateWith: map[string]string{"public.orders": "public.customers"}}, c.Citus)

	f, err = Parse([]byte(flavorBase))
	require.NoError(t, err)
	require.Equal(t, pgsink.FlavorPostgres, PostgresSinkConfig(f.Sinks[0]).Flavor)
	require.False(t, PostgresSinkConfig(f.Sinks[0]).SyncCommit, "asynchronous commit by default")

	f, err = Parse([]byte(flavorBase + "    async_commit: false\n"))
	require.NoError(t, err)
	require.True(t, PostgresSinkConfig(f.Sinks[0]).SyncCommit)
}

func TestFlavorErrors(t *testing.T) {
	for _, tc := range []struct{ name, extra, key, want string }{
		{"unknown flavor", "    flavor: cockroach\n", "sinks[pg].flavor", `flavor "cockroach" is not supported: use postgres, aurora-dsql or citus`},
		{"dsql section without the flavor", "    dsql: {region: us-east-1}\n", "sinks[pg].dsql", "is for flavor aurora-dsql, the sink's flavor is postgres"},
		{"citus section without the flavor", "    flavor: aurora-dsql\n    citus: {reference: [a.b]}\n", "sinks[pg].citus", "is for flavor citus, the sink's flavor is aurora-dsql"},
		{"async commit on dsql", "    flavor: aurora-dsql\n    async_commit: true\n", "sinks[pg].async_commit", "is for flavor postgres: aurora-dsql commits synchronously"},
		{"iam with dsql", "    flavor: aurora-dsql\n    iam: {region: us-east-1}\n", "sinks[pg].iam", "is for Aurora/RDS PostgreSQL"},
		{"password with dsql", "    flavor: aurora-dsql\n    password: x\n", "sinks[pg].password", "aurora-dsql authenticates with IAM tokens only"},
		{"rows at the limit", "    flavor: aurora-dsql\n    dsql: {max_tx_rows: 3000}\n", "sinks[pg].dsql.max_tx_rows", "3000: must be below DSQL's 3,000 rows"},
		{"bytes at the limit", "    flavor: aurora-dsql\n    dsql: {max_tx_bytes: 10MiB}\n", "sinks[pg].dsql.max_tx_bytes", "10485760: must be below DSQL's 10 MiB"},
		{"duration at the limit", "    flavor: aurora-dsql\n    dsql: {max_tx_duration: 5m}\n", "sinks[pg].dsql.max_tx_duration", "must be below DSQL's 5 minutes"},
		{"connection age at the limit", "    flavor: aurora-dsql\n    dsql: {conn_max_age: 1h}\n", "sinks[pg].dsql.conn_max_age", "must be below DSQL's 1 hour"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(flavorBase + tc.extra))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.key+" (line ")
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

func TestAsyncCommitIsForPostgresSinks(t *testing.T) {
	_, err := Parse([]byte("source: {dsn: x}\ntrail: {dir: /t}\nsinks:\n  - name: k\n    kind: kafka\n    brokers: [b:9092]\n    async_commit: false\n"))
	require.Error(t, err)
	require.Contains(t, err.Error(), "sinks[k].async_commit (line ")
	require.Contains(t, err.Error(), "is for postgres sinks, this one is kafka")
}
