package trigger_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

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
