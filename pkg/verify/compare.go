package verify

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// sum is a range's row count and checksum on one side.
type sum struct {
	rows int64
	hash string
}

func (t *table) sum(ctx context.Context, q *pgx.Conn, s side, r krange) (sum, error) {
	var out sum
	if err := q.QueryRow(ctx, t.sumSQL(s, r)).Scan(&out.rows, &out.hash); err != nil {
		return out, fmt.Errorf("checksum of %s: %w", t.Source, err)
	}
	return out, nil
}

// pair is a worker's connections, each in its side's snapshot.
type pair struct {
	src, dst *pgx.Conn
}

// sums reads r's count and checksum on both sides at once.
func (p pair) sums(ctx context.Context, t *table, r krange) (a, b sum, err error) {
	errc := make(chan error, 1)
	go func() {
		var err error
		b, err = t.sum(ctx, p.dst, t.dst(), r)
		errc <- err
	}()
	a, err = t.sum(ctx, p.src, t.src(), r)
	if derr := <-errc; err == nil {
		err = derr
	}
	return a, b, err
}

// diff collects a table's differences (keys up to a limit, all counted).
type diff struct {
	maxKeys                int
	missing, extra, change []string
	nMissing, nExtra, nChg int64
	leaves                 []krange // the differing ranges at their finest
}

func (d *diff) add(list *[]string, n *int64, key string) {
	*n++
	if len(*list) < d.maxKeys {
		*list = append(*list, key)
	}
}

// compare compares r, bisecting it when it differs; src and dst are r's
// sums when already read.
func (p pair) compare(ctx context.Context, t *table, r krange, a, b sum, leafRows int64, d *diff) error {
	if a == b {
		return nil
	}
	if len(t.PrimaryKey) == 0 {
		d.leaves = append(d.leaves, r)
		switch {
		case a.rows > b.rows:
			d.nMissing += a.rows - b.rows
		case a.rows < b.rows:
			d.nExtra += b.rows - a.rows
		default:
			d.nChg++
		}
		return nil
	}
	big, bigSide := p.src, t.src()
	n := a.rows
	if b.rows > a.rows {
		big, bigSide, n = p.dst, t.dst(), b.rows
	}
	if n <= leafRows {
		d.leaves = append(d.leaves, r)
		return p.leaf(ctx, t, r, d)
	}
	bounds, err := t.bounds(ctx, big, bigSide, r, (n+7)/8)
	if err != nil {
		return err
	}
	for _, sub := range splitAt(r, bounds) {
		sa, sb, err := p.sums(ctx, t, sub)
		if err != nil {
			return err
		}
		if err := p.compare(ctx, t, sub, sa, sb, leafRows, d); err != nil {
			return err
		}
	}
	return nil
}

// leaf compares r row by row: key → hash on each side.
func (p pair) leaf(ctx context.Context, t *table, r krange, d *diff) error {
	var srcRows, dstRows map[string]string
	errc := make(chan error, 1)
	go func() {
		var err error
		dstRows, err = t.rows(ctx, p.dst, t.dst(), r)
		errc <- err
	}()
	srcRows, err := t.rows(ctx, p.src, t.src(), r)
	if derr := <-errc; err == nil {
		err = derr
	}
	if err != nil {
		return err
	}
	var keys []string
	for k := range srcRows {
		keys = append(keys, k)
	}
	for k := range dstRows {
		if _, ok := srcRows[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		sh, inSrc := srcRows[k]
		dh, inDst := dstRows[k]
		name := t.keyText(k)
		switch {
		case !inDst:
			d.add(&d.missing, &d.nMissing, name)
		case !inSrc:
			d.add(&d.extra, &d.nExtra, name)
		case sh != dh:
			d.add(&d.change, &d.nChg, name)
		}
	}
	return nil
}

// rows maps each row's key (its columns' text joined by NUL) to its hash.
func (t *table) rows(ctx context.Context, q *pgx.Conn, s side, r krange) (map[string]string, error) {
	rows, err := q.Query(ctx, t.rowsSQL(s, r))
	if err != nil {
		return nil, fmt.Errorf("read rows of %s: %w", t.Source, err)
	}
	out := map[string]string{}
	n := len(s.key)
	vals := make([]string, n+1)
	ptrs := make([]any, n+1)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			rows.Close()
			return nil, err
		}
		out[strings.Join(vals[:n], "\x00")] = vals[n]
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read rows of %s: %w", t.Source, err)
	}
	return out, nil
}

// keyText renders a key as PostgreSQL's messages do: (id, region)=(5, eu).
func (t *table) keyText(k string) string {
	return "(" + strings.Join(t.keyNames, ", ") + ")=(" + strings.Join(strings.Split(k, "\x00"), ", ") + ")"
}
