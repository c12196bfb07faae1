package demo

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/internal/dynalitetest"
)

// compareDynamoDB digests every demo table on A and in DynamoDB: a full scan
// of the table's items, each attribute loaded as text into a temporary
// table on A and cast to its column's type there, so the digest compares
// values (a numeric 12.50 read back as N 12.5 is equal) by the same md5 of
// row texts as the PostgreSQL check. An item without a source row, or a
// row without an item, changes the count or the hash.
func compareDynamoDB(ctx context.Context, dsnA string, srv *dynalitetest.Server) ([]tableCheck, error) {
	conn, err := pgx.Connect(ctx, dsnA)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	client := srv.Client()
	var checks []tableCheck
	for i, t := range tables {
		c := tableCheck{table: t.name}
		if c.rowsA, c.hashA, err = tableDigest(ctx, dsnA, t.name, t.key); err != nil {
			return nil, fmt.Errorf("digest %s on A: %w", t.name, err)
		}
		cols, typs, err := columns(ctx, conn, t.name)
		if err != nil {
			return nil, err
		}
		raw := fmt.Sprintf("ddb_raw_%d", i)
		defs := make([]string, len(cols))
		casts := make([]string, len(cols))
		for j, col := range cols {
			defs[j] = pgx.Identifier{col}.Sanitize() + " text"
			casts[j] = fmt.Sprintf("%s::%s AS %s", pgx.Identifier{col}.Sanitize(), typs[j], pgx.Identifier{col}.Sanitize())
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE TEMP TABLE %s (%s)", raw, strings.Join(defs, ", "))); err != nil {
			return nil, err
		}
		var rows [][]any
		pages := dynamodb.NewScanPaginator(client, &dynamodb.ScanInput{TableName: aws.String(strings.Replace(t.name, ".", "_", 1)), ConsistentRead: aws.Bool(true)})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("scan %s in DynamoDB: %w", t.name, err)
			}
			for _, item := range page.Items {
				row := make([]any, len(cols))
				for j, col := range cols {
					row[j] = attrText(item[col])
				}
				rows = append(rows, row)
			}
		}
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{raw}, cols, pgx.CopyFromRows(rows)); err != nil {
			return nil, fmt.Errorf("load %s's items for the check: %w", t.name, err)
		}
		q := fmt.Sprintf(`SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t.%s)), '') FROM (SELECT %s FROM %s) t`,
			t.key, strings.Join(casts, ", "), raw)
		if err := conn.QueryRow(ctx, q).Scan(&c.rowsC, &c.hashC); err != nil {
			return nil, fmt.Errorf("digest %s from DynamoDB: %w", t.name, err)
		}
		checks = append(checks, c)
	}
	return checks, nil
}

// columns are a table's column names and types in order.
func columns(ctx context.Context, conn *pgx.Conn, table string) (names, types []string, err error) {
	rows, err := conn.Query(ctx, `SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, table)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var n, t string
		if err := rows.Scan(&n, &t); err != nil {
			return nil, nil, err
		}
		names, types = append(names, n), append(types, t)
	}
	return names, types, rows.Err()
}

// attrText is the text of a scalar attribute; nil for NULL or a missing one.
func attrText(v types.AttributeValue) any {
	switch x := v.(type) {
	case *types.AttributeValueMemberS:
		return x.Value
	case *types.AttributeValueMemberN:
		return x.Value
	case *types.AttributeValueMemberBOOL:
		return fmt.Sprint(x.Value)
	case *types.AttributeValueMemberB:
		return fmt.Sprintf(`\x%x`, x.Value)
	}
	return nil
}
