package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// bigOrderID is the order whose description is large enough to be TOASTed
// out of line; later updates leave the description alone, so pgoutput sends
// it as an unchanged TOAST value that the sink must not overwrite.
const bigOrderID = 1

// bigDescriptionBytes is the size of that description: random hex, which
// compresses to about half, so it stays well above the ~2 KB TOAST threshold.
const bigDescriptionBytes = 24 << 10

// workload writes small transactions to A from several sessions. Each
// writer owns the orders and employees it created, so writers never wait for
// each other's row locks (and never deadlock).
type workload struct {
	dsn     string
	writers int
	// interval is the pause each writer keeps between commits (0: none).
	interval time.Duration
	// duration is how long the workload is meant to run; the TOASTed order
	// is updated at a third and at two thirds of it.
	duration time.Duration
	nextID   atomic.Int64 // last order_id handed out
	commits  atomic.Uint64
}

func newWorkload(dsn string, writers, rate int, duration time.Duration) *workload {
	w := &workload{dsn: dsn, writers: writers, duration: duration}
	if rate > 0 {
		w.interval = time.Duration(writers) * time.Second / time.Duration(rate)
	}
	w.nextID.Store(bigOrderID)
	return w
}

// Commits is the number of transactions committed on A so far.
func (w *workload) Commits() uint64 { return w.commits.Load() }

// run writes until ctx ends; it returns the first error of any writer, or
// nil when the workload was stopped by ctx.
func (w *workload) run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, w.writers)
	for i := range w.writers {
		wg.Go(func() { errs[i] = w.writer(ctx, i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// writer is one session's loop. Writer 0 also owns the big TOASTed order:
// it inserts it first and later updates the order's other columns twice.
func (w *workload) writer(ctx context.Context, n int) error {
	conn, err := pgx.Connect(ctx, w.dsn)
	if err != nil {
		return fmt.Errorf("writer %d: connect to A: %w", n, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rnd := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(n)))
	st := &writerState{rnd: rnd}
	if n == 0 {
		if err := w.commit(ctx, conn, func(tx pgx.Tx) error { return insertBigOrder(ctx, tx) }); err != nil {
			return stopped(ctx, fmt.Errorf("writer %d: insert the TOASTed order: %w", n, err))
		}
	}
	bigUpdates := 0
	started := time.Now()
	for ctx.Err() == nil {
		t0 := time.Now()
		err := w.commit(ctx, conn, func(tx pgx.Tx) error { return w.step(ctx, tx, st) })
		if err != nil {
			return stopped(ctx, fmt.Errorf("writer %d: %w", n, err))
		}
		// Touch the TOASTed order once early and once late, leaving its
		// description as it is.
		if n == 0 && bigUpdates < 2 && time.Since(started) > time.Duration(bigUpdates+1)*w.duration/3 {
			bigUpdates++
			err := w.commit(ctx, conn, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `UPDATE app.orders SET notes = $2, delivery_address = $3 WHERE order_id = $1`,
					bigOrderID, fmt.Sprintf("update %d of the big order", bigUpdates), address(rnd))
				return err
			})
			if err != nil {
				return stopped(ctx, fmt.Errorf("writer %d: update the TOASTed order: %w", n, err))
			}
		}
		if pause := w.interval - time.Since(t0); pause > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
		}
	}
	return nil
}

// stopped drops the error a cancelled statement causes when the workload is
// stopped.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (w *workload) commit(ctx context.Context, conn *pgx.Conn, f func(pgx.Tx) error) error {
	if err := pgx.BeginFunc(ctx, conn, f); err != nil {
		return err
	}
	w.commits.Add(1)
	return nil
}

// writerState is what one writer created and may still change.
type writerState struct {
	rnd       *mrand.Rand
	orders    []int64
	employees []int32
}

// step is one transaction: a few new orders, sometimes an order updated or
// deleted, sometimes an employee hired or given a raise.
func (w *workload) step(ctx context.Context, tx pgx.Tx, st *writerState) error {
	rnd := st.rnd
	for range 1 + rnd.IntN(4) {
		id := w.nextID.Add(1)
		_, err := tx.Exec(ctx, `INSERT INTO app.orders (order_id, customer, product, description, delivery_address, order_date, notes)
			VALUES ($1, $2, $3, $4, $5, now() - make_interval(mins => $6), NULL)`,
			id, pick(rnd, customers), pick(rnd, products), fmt.Sprintf("%d × %s", 1+rnd.IntN(5), pick(rnd, products)),
			address(rnd), rnd.IntN(60*24*30))
		if err != nil {
			return fmt.Errorf("insert order: %w", err)
		}
		st.orders = append(st.orders, id)
	}
	switch r := rnd.IntN(100); {
	case r < 40 && len(st.orders) > 0:
		_, err := tx.Exec(ctx, `UPDATE app.orders SET notes = $2, delivery_address = $3 WHERE order_id = $1`,
			st.orders[rnd.IntN(len(st.orders))], pick(rnd, notes), address(rnd))
		if err != nil {
			return fmt.Errorf("update order: %w", err)
		}
	case r < 48 && len(st.orders) > 0:
		i := rnd.IntN(len(st.orders))
		if _, err := tx.Exec(ctx, `DELETE FROM app.orders WHERE order_id = $1`, st.orders[i]); err != nil {
			return fmt.Errorf("delete order: %w", err)
		}
		st.orders[i] = st.orders[len(st.orders)-1]
		st.orders = st.orders[:len(st.orders)-1]
	}
	switch r := rnd.IntN(100); {
	case r < 25 || len(st.employees) == 0 && r < 50:
		var id int32
		err := tx.QueryRow(ctx, `INSERT INTO public.employee (name, department, salary, hire_date)
			VALUES ($1, $2, $3, current_date - $4::int) RETURNING id`,
			pick(rnd, firstNames)+" "+pick(rnd, lastNames), pick(rnd, departments),
			fmt.Sprintf("%d.%02d", 40000+rnd.IntN(80000), rnd.IntN(100)), rnd.IntN(3650)).Scan(&id)
		if err != nil {
			return fmt.Errorf("insert employee: %w", err)
		}
		st.employees = append(st.employees, id)
	case r < 50:
		_, err := tx.Exec(ctx, `UPDATE public.employee SET salary = round(salary * $2, 2) WHERE id = $1`,
			st.employees[rnd.IntN(len(st.employees))], fmt.Sprintf("1.0%d", 1+rnd.IntN(9)))
		if err != nil {
			return fmt.Errorf("raise salary: %w", err)
		}
	}
	return nil
}

func insertBigOrder(ctx context.Context, tx pgx.Tx) error {
	b := make([]byte, bigDescriptionBytes/2)
	_, _ = rand.Read(b) // never fails
	_, err := tx.Exec(ctx, `INSERT INTO app.orders (order_id, customer, product, description, delivery_address, order_date, notes)
		VALUES ($1, 'Globex Corporation', 'Custom build', $2, '1 Industrial Way, Springfield', now(), 'large description, TOASTed')`,
		bigOrderID, hex.EncodeToString(b))
	return err
}

var (
	customers   = []string{"Acme Corp", "Globex Corporation", "Initech", "Umbrella Ltd", "Stark Industries", "Wayne Enterprises", "Hooli", "Vandelay Industries", "Soylent Co", "Wonka Industries"}
	products    = []string{"laptop", "monitor", "keyboard", "mouse", "docking station", "headset", "webcam", "USB-C cable", "desk lamp", "office chair"}
	notes       = []string{"leave at the front desk", "call before delivery", "gift wrap", "fragile", "deliver after 5 pm", "customer requested expedited shipping", "address corrected"}
	streets     = []string{"Main St", "Oak Ave", "Pine Rd", "Maple Dr", "Cedar Ln", "Elm St", "Lakeview Blvd", "Hillcrest Ave"}
	cities      = []string{"Springfield", "Riverside", "Franklin", "Greenville", "Fairview", "Madison", "Georgetown"}
	firstNames  = []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Linus"}
	lastNames   = []string{"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton", "Torvalds"}
	departments = []string{"engineering", "sales", "finance", "support", "operations", "marketing"}
)

func pick(rnd *mrand.Rand, s []string) string { return s[rnd.IntN(len(s))] }

func address(rnd *mrand.Rand) string {
	return fmt.Sprintf("%d %s, %s", 1+rnd.IntN(9999), pick(rnd, streets), pick(rnd, cities))
}
