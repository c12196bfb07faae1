package dynamodb

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// CheckResult is what Check found.
type CheckResult struct {
	// Reached describes the endpoint and region that answered.
	Reached string
	// Missing lists the tables that do not exist ("table (for schema.table)").
	Missing []string
	// Mismatched lists tables whose key schema differs from the one the
	// sink writes, with both.
	Mismatched []string
	// Unkeyed lists, for source tables the sink cannot key (no primary key
	// and no keys entry, or a key of more than two columns), why.
	Unkeyed []string
	// Tables is the number of tables checked.
	Tables int
}

// Check verifies, for `cdcd check`, that the endpoint answers with the
// credentials of the AWS default chain and that the table of each source
// relation exists with the key schema the sink writes. rels need only
// their names, columns and primary key. It returns an error when the
// endpoint or the credentials fail; it changes nothing.
func Check(ctx context.Context, cfg Config, rels []*change.Relation) (*CheckResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	client, err := newClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := client.ListTables(ctx, &dynamodb.ListTablesInput{Limit: new(int32(1))}); err != nil {
		return nil, classify(err)
	}
	s := &Sink{cfg: cfg, log: cfg.Logger, client: client, tables: map[string]*table{}}
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = "the public endpoint"
	}
	res := &CheckResult{Reached: fmt.Sprintf("%s (region %s)", endpoint, client.Options().Region), Tables: len(rels)}
	for _, rel := range rels {
		key, err := s.keyOf(rel)
		if err != nil {
			res.Unkeyed = append(res.Unkeyed, err.Error())
			continue
		}
		want := &table{name: cfg.tableName(rel.Schema, rel.Name), pk: key.Partition, sk: key.Sort}
		if i := rel.Column(key.Partition); i >= 0 {
			want.pkType = attrType(rel.Columns[i].TypeOID)
		}
		if i := rel.Column(key.Sort); key.Sort != "" && i >= 0 {
			want.skType = attrType(rel.Columns[i].TypeOID)
		}
		t, err := describeTable(ctx, client, want.name)
		var nf *types.ResourceNotFoundException
		switch {
		case errors.As(err, &nf):
			res.Missing = append(res.Missing, fmt.Sprintf("%s (for %s, keyed by %s)", want.name, rel.QualifiedName(), keyDesc(want)))
		case err != nil:
			return nil, classify(err)
		case t.pk != want.pk || t.sk != want.sk:
			res.Mismatched = append(res.Mismatched, fmt.Sprintf("%s is keyed by %s, %s needs %s", t.name, keyDesc(t), rel.QualifiedName(), keyDesc(want)))
		}
	}
	return res, nil
}
