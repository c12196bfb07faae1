package trigger_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/pkg/source"
	"github.com/cdcd-io/cdcd/pkg/source/trigger"
)

// Example shows the capture loop's use of the package: install once, take
// the first position, then poll, store durably, acknowledge.
func Example() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, "postgres://cdc@db.example/app")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close(ctx)
	tables := []trigger.Table{{Schema: "public", Name: "orders"}}
	if err := trigger.Install(ctx, conn, tables, trigger.Options{}); err != nil {
		fmt.Println(err)
		return
	}
	pos, err := trigger.Start(ctx, conn) // or StartExport for an initial copy
	if err != nil {
		fmt.Println(err)
		return
	}
	r := trigger.NewReader()
	for range time.Tick(time.Second) {
		b, err := r.Poll(ctx, conn, pos)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, tx := range b.Txs {
			fmt.Println(tx.XID, len(tx.Changes)) // write to the trail instead
		}
		// ... sync the trail, then:
		if _, err := trigger.Ack(ctx, conn, b.Cur); err != nil {
			fmt.Println(err)
			return
		}
		pos = b.Cur
	}
}

// ExampleNewOpener opens the trigger source as capture does: one session,
// started after the trail's last durable transaction.
func ExampleNewOpener() {
	ctx := context.Background()
	open := trigger.NewOpener(trigger.Config{
		DSN:      "postgres://cdc@db.example/app",
		Create:   true, // install the change log and triggers when missing
		StateDir: "/var/lib/cdcd/trail",
	})
	src, id, err := open(ctx)
	if err != nil {
		fmt.Println(err) // trigger.IsTerminal(err): stop, otherwise retry
		return
	}
	defer src.Close()
	fmt.Println(id.Kind, id.SystemID)
	if _, err := src.Start(ctx, 0); err != nil { // 0: a new trail
		fmt.Println(err)
		return
	}
	for {
		ev, err := src.Next(ctx, time.Now().Add(100*time.Millisecond))
		if err != nil {
			fmt.Println(err)
			return
		}
		if ev.Kind == source.Commit {
			// ... once the trail holds it durably:
			if _, err := src.Ack(ctx, ev.Tx.EndLSN, false); err != nil {
				fmt.Println(err)
				return
			}
		}
	}
}
