package trail_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

// Capture writes a transaction and acknowledges the source only with what
// Sync returns; apply reads it back with relations resolved.
func Example() {
	dir, _ := os.MkdirTemp("", "trail")
	defer os.RemoveAll(dir)

	w, err := trail.Open(dir, trail.Options{SystemID: 7380116513464795250})
	if err != nil {
		panic(err)
	}
	users := &change.Relation{OID: 16384, Schema: "public", Name: "users", ReplicaIdentity: 'd',
		Columns:    []change.Column{{Name: "id", TypeOID: 20, TypeName: "int8", TypeMod: -1, Key: true}, {Name: "name", TypeOID: 25, TypeName: "text", TypeMod: -1}},
		PrimaryKey: []int{0}}
	tx := &change.Tx{XID: 731, FinalLSN: 0x16B374D848, CommitLSN: 0x16B374D848, EndLSN: 0x16B374D878,
		CommitTime: time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)}
	_ = w.Begin(tx)
	_ = w.Change(&change.Change{Op: change.OpInsert, Relation: users, New: change.Row{change.Text("1"), change.Text("ada")}})
	_ = w.Commit(tx)
	ack, err := w.Sync() // group commit: one fdatasync for every commit so far
	if err != nil {
		panic(err)
	}
	fmt.Println("acknowledge up to", ack)

	r, err := trail.NewReader(dir, 0, trail.ReaderOptions{Limit: w.Durable})
	if err != nil {
		panic(err)
	}
	defer r.Close()
	for {
		rec, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			panic(err)
		}
		switch rec.Type {
		case trail.RecordChange:
			fmt.Println(rec.Seq, rec.Type, rec.Change.Op, rec.Change.Relation.QualifiedName(), rec.Change.New)
		case trail.RecordSchema:
			fmt.Println(rec.Seq, rec.Type, rec.Relation.QualifiedName())
		default:
			fmt.Println(rec.Seq, rec.Type, rec.Tx.XID)
		}
	}
	_ = w.Close()
	// Output:
	// acknowledge up to 16/B374D878
	// 1 BEGIN 731
	// 2 SCHEMA public.users
	// 3 CHANGE insert public.users [1 ada]
	// 4 COMMIT 731
}
