package dsqltest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct{ sql, want string }{
		{`CREATE TEMP TABLE IF NOT EXISTS pg_temp.cdcd_stage_2 (c0 text, c1 text) ON COMMIT DELETE ROWS`, "temporary table"},
		{`INSERT INTO pg_temp.stage SELECT 1`, "temporary table"},
		{`CREATE UNLOGGED TABLE t (id int)`, "unlogged table"},
		{`TRUNCATE "public"."t"`, "TRUNCATE"},
		{`MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE`, "MERGE"},
		{`SAVEPOINT a`, "SAVEPOINT"},
		{`ROLLBACK TO a`, "SAVEPOINT"},
		{`SET session_replication_role = replica`, "session_replication_role"},
		{`COPY "public"."t" ("id") FROM STDIN`, "COPY"},
		{`CREATE INDEX t_v ON t (v)`, "CREATE INDEX without ASYNC"},
		{`CREATE UNIQUE INDEX ASYNC t_v ON t (v)`, ""},
		{`ALTER TABLE t ADD PRIMARY KEY (id)`, "primary key added after CREATE TABLE"},
		{`CREATE TABLE t (id serial PRIMARY KEY)`, "serial, sequence or identity"},
		{`CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY)`, "serial, sequence or identity"},
		{`CREATE TABLE t (id int PRIMARY KEY, p int REFERENCES p)`, "foreign key"},
		{`CREATE TYPE mood AS ENUM ('a')`, "CREATE TYPE/DOMAIN/TRIGGER/EXTENSION/FUNCTION"},
		{`CREATE TABLE t (id int PRIMARY KEY, n numeric NOT NULL)`, "numeric column without precision"},
		{`CREATE TABLE t (id int PRIMARY KEY, n numeric(12,2), m numeric (3))`, ""},
		{`CREATE TABLE t (id int PRIMARY KEY, d jsonb)`, "column type DSQL lacks"},
		{`CREATE TABLE t (id int PRIMARY KEY, a int[])`, "column type DSQL lacks"},
		{`CREATE TABLE t ("jsonb" text PRIMARY KEY)`, ""},
		{`INSERT INTO t AS t (id) SELECT CAST(u.c0 AS integer) FROM unnest($1::text[]) AS u(c0) ON CONFLICT (id) DO NOTHING`, ""},
	} {
		got := strings.Join(check([]Statement{{PID: "1", VXID: "3/1", SQL: tc.sql}}), "; ")
		if tc.want == "" {
			require.Empty(t, got, tc.sql)
		} else {
			require.Contains(t, got, tc.want+": ", tc.sql)
		}
	}
	tx := []Statement{{PID: "1", VXID: "3/2", SQL: "CREATE SCHEMA s"}, {PID: "1", VXID: "3/2", SQL: "CREATE TABLE s.t (id int PRIMARY KEY)"},
		{PID: "1", VXID: "3/3", SQL: "CREATE TABLE s.u (id int PRIMARY KEY)"}, {PID: "1", VXID: "3/3", SQL: "INSERT INTO s.u VALUES (1)"},
		{PID: "2", VXID: "3/2", SQL: "CREATE TABLE s.v (id int PRIMARY KEY)"}}
	require.Equal(t, []string{"two DDL statements in one transaction: CREATE TABLE s.t (id int PRIMARY KEY)",
		"DML after DDL in one transaction: INSERT INTO s.u VALUES (1)"}, check(tx))
}

func TestStatementsFromTheLog(t *testing.T) {
	log := `2026-11-30 05:40:00.123 UTC [10] vxid=3/45 app=cdcd sink x| LOG:  statement: begin
2026-11-30 05:40:00.124 UTC [10] vxid=3/45 app=cdcd sink x| LOG:  execute stmtcache_1: INSERT INTO t
	SELECT 1
2026-11-30 05:40:00.125 UTC [10] vxid=3/45 app=cdcd sink x| DETAIL:  parameters: $1 = '1'
2026-11-30 05:40:00.126 UTC [11] vxid=4/2 app=psql| LOG:  statement: TRUNCATE t
2026-11-30 05:40:00.127 UTC [10] vxid= app=cdcd sink x| LOG:  statement: commit
`
	path := filepath.Join(t.TempDir(), "server.log")
	require.NoError(t, os.WriteFile(path, []byte(log), 0o600))
	got, err := statements(path, "cdcd sink x")
	require.NoError(t, err)
	require.Equal(t, []Statement{
		{PID: "10", VXID: "3/45", App: "cdcd sink x", SQL: "begin"},
		{PID: "10", VXID: "3/45", App: "cdcd sink x", SQL: "INSERT INTO t\n\tSELECT 1"},
		{PID: "10", VXID: "", App: "cdcd sink x", SQL: "commit"},
	}, got)
}
