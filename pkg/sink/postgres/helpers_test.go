package postgres

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/sink"
)

// One cluster serves the package's tests; each test gets its own database.
var (
	clusterOnce sync.Once
	cluster     *pgtest.Cluster
	clusterErr  error
	dbSeq       atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, c := range []*pgtest.Cluster{cluster, dsqlCluster} {
		if c != nil {
			if err := c.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}
	}
	os.Exit(code)
}

func testCluster(t testing.TB) *pgtest.Cluster {
	t.Helper()
	clusterOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cluster, clusterErr = pgtest.Start(ctx, pgtest.Options{Name: "sinkpg"})
	})
	if clusterErr != nil {
		t.Fatal(clusterErr)
	}
	return cluster
}

// env is a fresh target database.
type env struct {
	t   testing.TB
	c   *pgtest.Cluster
	db  string
	dsn string
}

// newEnv creates a database and runs ddl in it.
func newEnv(t testing.TB, ddl ...string) *env {
	t.Helper()
	c := testCluster(t)
	db := fmt.Sprintf("sink_%d", dbSeq.Add(1))
	c.ExecT(t, "postgres", "CREATE DATABASE "+db)
	if len(ddl) > 0 {
		c.ExecT(t, db, ddl...)
	}
	return &env{t: t, c: c, db: db, dsn: c.DSN(db)}
}

func (e *env) exec(sql ...string) { e.t.Helper(); e.c.ExecT(e.t, e.db, sql...) }

// sink opens a sink named name on the database, closed when the test ends.
func (e *env) sink(name string) *Sink {
	e.t.Helper()
	s, err := New(context.Background(), Config{Name: name, DSN: e.dsn}, testLogger(e.t))
	require.NoError(e.t, err)
	e.t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// rows returns the result of sql from a separate connection, one string per
// row with columns joined by "|" and NULL as <null>.
func (e *env) rows(sql string) []string {
	e.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dsn)
	require.NoError(e.t, err)
	defer conn.Close(ctx)
	rs, err := conn.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	require.NoError(e.t, err)
	var out []string
	for rs.Next() {
		var cols []string
		for _, raw := range rs.RawValues() {
			if raw == nil {
				cols = append(cols, "<null>")
			} else {
				cols = append(cols, string(raw))
			}
		}
		out = append(out, strings.Join(cols, "|"))
	}
	require.NoError(e.t, rs.Err())
	return out
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// rel builds a relation from "name" or "name pk" column specs; oid is derived
// from the name.
func rel(qualified string, cols ...string) *change.Relation {
	schema, name, _ := strings.Cut(qualified, ".")
	r := &change.Relation{Schema: schema, Name: name, ReplicaIdentity: 'd'}
	for i, spec := range cols {
		f := strings.Fields(spec)
		c := change.Column{Name: f[0], TypeMod: -1}
		if len(f) > 1 && f[1] == "pk" {
			r.PrimaryKey = append(r.PrimaryKey, i)
			c.Key = true
		}
		r.Columns = append(r.Columns, c)
	}
	return r
}

// unch is the unchanged-TOAST marker in row arguments.
var unch = change.Unchanged

// row builds a row: a string is a text value, nil is NULL, a change.Value is
// taken as is.
func row(vals ...any) change.Row {
	r := make(change.Row, len(vals))
	for i, v := range vals {
		switch v := v.(type) {
		case nil:
			r[i] = change.Null
		case string:
			r[i] = change.Text(v)
		case change.Value:
			r[i] = v
		default:
			panic(fmt.Sprintf("row: %T", v))
		}
	}
	return r
}

// keyRow is an old-key tuple: vals at the key columns, absent elsewhere.
func keyRow(r *change.Relation, vals ...string) change.Row {
	out := make(change.Row, len(r.Columns))
	for i, k := range r.KeyColumns() {
		out[k] = change.Text(vals[i])
	}
	return out
}

func ins(r *change.Relation, vals ...any) *change.Change {
	return &change.Change{Op: change.OpInsert, Relation: r, New: row(vals...)}
}

// upd is an update without old tuple (key unchanged, default identity).
func upd(r *change.Relation, vals ...any) *change.Change {
	return &change.Change{Op: change.OpUpdate, Relation: r, New: row(vals...)}
}

// updKey is an update changing the key from oldKey.
func updKey(r *change.Relation, oldKey []string, vals ...any) *change.Change {
	return &change.Change{Op: change.OpUpdate, Relation: r, Old: keyRow(r, oldKey...), OldKeyOnly: true, New: row(vals...)}
}

func del(r *change.Relation, key ...string) *change.Change {
	return &change.Change{Op: change.OpDelete, Relation: r, Old: keyRow(r, key...), OldKeyOnly: true}
}

func trunc(cascade, restart bool, rels ...*change.Relation) *change.Change {
	return &change.Change{Op: change.OpTruncate, Truncate: &change.Truncate{Relations: rels, Cascade: cascade, RestartIdentity: restart}}
}

func heartbeat() *change.Change {
	return &change.Change{Op: change.OpMessage, Message: &change.Message{Transactional: true, Prefix: sink.HeartbeatPrefix, Content: []byte("x")}}
}

// tx wraps changes in one transaction.
func tx(changes ...*change.Change) sink.Tx {
	return sink.Tx{Tx: &change.Tx{}, Changes: changes}
}

// batch is a complete batch ending at position seq.
func batch(seq uint64, txs ...sink.Tx) *sink.Batch {
	rows := 0
	for _, t := range txs {
		rows += len(t.Changes)
	}
	return &sink.Batch{Txs: txs, Position: pos(seq), Rows: rows}
}

func pos(seq uint64) sink.Position {
	return sink.Position{Seq: seq, EndLSN: change.LSN(0x1_0000_0000 + seq*0x100)}
}

// apply applies a batch of one transaction with changes, at position seq.
func apply(t testing.TB, s *Sink, seq uint64, changes ...*change.Change) {
	t.Helper()
	require.NoError(t, s.Apply(context.Background(), batch(seq, tx(changes...))))
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
