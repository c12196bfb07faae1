package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// table is a DynamoDB table and its key schema.
type table struct {
	name           string
	pk, sk         string // key attribute names; sk "" for none
	pkType, skType types.ScalarAttributeType
	active         bool // status ACTIVE when described
}

// relPlan is how one source relation's rows become items.
type relPlan struct {
	rel          *change.Relation
	t            *table
	pkCol, skCol int // column indexes; skCol -1 for none
}

// plan returns (and caches) the item plan of a relation, creating its table
// when configured to.
func (s *Sink) plan(ctx context.Context, rel *change.Relation) (*relPlan, error) {
	if p, ok := s.rels[rel]; ok {
		return p, nil
	}
	key, err := s.keyOf(rel)
	if err != nil {
		return nil, err
	}
	p := &relPlan{rel: rel, pkCol: rel.Column(key.Partition), skCol: -1}
	if p.pkCol < 0 {
		return nil, fmt.Errorf("dynamodb sink %s: keys[%q].partition: %s has no column %q", s.cfg.Name, rel.QualifiedName(), rel.QualifiedName(), key.Partition)
	}
	if key.Sort != "" {
		if p.skCol = rel.Column(key.Sort); p.skCol < 0 {
			return nil, fmt.Errorf("dynamodb sink %s: keys[%q].sort: %s has no column %q", s.cfg.Name, rel.QualifiedName(), rel.QualifiedName(), key.Sort)
		}
	}
	want := &table{name: s.cfg.tableName(rel.Schema, rel.Name), pk: key.Partition, sk: key.Sort,
		pkType: attrType(rel.Columns[p.pkCol].TypeOID)}
	if p.skCol >= 0 {
		want.skType = attrType(rel.Columns[p.skCol].TypeOID)
	}
	if p.t, err = s.ensureTable(ctx, want, rel.QualifiedName()); err != nil {
		return nil, err
	}
	s.rels[rel] = p
	return p, nil
}

// keyOf is a relation's configured key, or its primary key.
func (s *Sink) keyOf(rel *change.Relation) (Key, error) {
	if k, ok := s.cfg.Keys[rel.QualifiedName()]; ok {
		return k, nil
	}
	cols := rel.KeyColumns()
	switch len(cols) {
	case 1:
		return Key{Partition: rel.Columns[cols[0]].Name}, nil
	case 2:
		return Key{Partition: rel.Columns[cols[0]].Name, Sort: rel.Columns[cols[1]].Name}, nil
	case 0:
		return Key{}, fmt.Errorf("dynamodb sink %s: table %s has no primary key: give it one, or set keys: {%q: {partition: …}} in the sink's config",
			s.cfg.Name, rel.QualifiedName(), rel.QualifiedName())
	}
	return Key{}, fmt.Errorf("dynamodb sink %s: table %s has a %d-column primary key but a DynamoDB key has at most two attributes: set keys: {%q: {partition: …, sort: …}} in the sink's config",
		s.cfg.Name, rel.QualifiedName(), len(cols), rel.QualifiedName())
}

// attrType is the key attribute type for a column type.
func attrType(oid uint32) types.ScalarAttributeType {
	switch oid {
	case oidInt2, oidInt4, oidInt8, oidOID, oidXID, oidNumeric:
		return types.ScalarAttributeTypeN
	case oidBytea:
		return types.ScalarAttributeTypeB
	}
	return types.ScalarAttributeTypeS
}

// ensureTable checks that a table exists with the wanted key attributes
// (their types are the table's), creating it when configured to.
func (s *Sink) ensureTable(ctx context.Context, want *table, source string) (*table, error) {
	if t, ok := s.tables[want.name]; ok {
		if t.pk != want.pk || t.sk != want.sk {
			return nil, fmt.Errorf("dynamodb sink %s: table %s is keyed by %s, but %s maps to it keyed by %s", s.cfg.Name, t.name, keyDesc(t), source, keyDesc(want))
		}
		return t, nil
	}
	var t *table
	err := s.call(ctx, "DescribeTable", func() error {
		var err error
		t, err = describeTable(ctx, s.client, want.name)
		return err
	})
	var nf *types.ResourceNotFoundException
	switch {
	case errors.As(err, &nf) && s.cfg.CreateTables:
		if err := s.call(ctx, "CreateTable", func() error { return createTable(ctx, s.client, want) }); err != nil {
			return nil, classify(fmt.Errorf("dynamodb sink %s: %w", s.cfg.Name, err))
		}
		s.log.Info("dynamodb table created", "table", want.name, "key", keyDesc(want), "source", source)
		t = want
	case errors.As(err, &nf):
		return nil, fmt.Errorf("dynamodb sink %s: table %s (for %s) does not exist: create it keyed by %s, or set schema.create: true",
			s.cfg.Name, want.name, source, keyDesc(want))
	case err != nil:
		return nil, classify(fmt.Errorf("dynamodb sink %s: %w", s.cfg.Name, err))
	case !t.active:
		// Being created (by another cdcd, or by this one before a restart).
		if err := s.call(ctx, "DescribeTable", func() error { return waitActive(ctx, s.client, t.name) }); err != nil {
			return nil, classify(fmt.Errorf("dynamodb sink %s: %w", s.cfg.Name, err))
		}
	}
	if t.pk != want.pk || t.sk != want.sk {
		return nil, fmt.Errorf("dynamodb sink %s: table %s is keyed by %s, but %s needs %s: recreate the table or set keys for %s",
			s.cfg.Name, t.name, keyDesc(t), source, keyDesc(want), source)
	}
	s.tables[t.name] = t
	return t, nil
}

func keyDesc(t *table) string {
	d := "partition " + t.pk
	if t.pkType != "" {
		d += " (" + string(t.pkType) + ")"
	}
	if t.sk != "" {
		d += ", sort " + t.sk
		if t.skType != "" {
			d += " (" + string(t.skType) + ")"
		}
	}
	return d
}

// describeTable reads a table's key schema.
func describeTable(ctx context.Context, c *dynamodb.Client, name string) (*table, error) {
	out, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	if err != nil {
		return nil, fmt.Errorf("describe table %s: %w", name, err)
	}
	return tableOf(out.Table), nil
}

func tableOf(d *types.TableDescription) *table {
	t := &table{name: aws.ToString(d.TableName), active: d.TableStatus == types.TableStatusActive}
	typ := map[string]types.ScalarAttributeType{}
	for _, a := range d.AttributeDefinitions {
		typ[aws.ToString(a.AttributeName)] = a.AttributeType
	}
	for _, k := range d.KeySchema {
		n := aws.ToString(k.AttributeName)
		if k.KeyType == types.KeyTypeHash {
			t.pk, t.pkType = n, typ[n]
		} else {
			t.sk, t.skType = n, typ[n]
		}
	}
	return t
}

// createTable creates an on-demand table and waits until it is active.
// Another process creating it at the same time is not an error.
func createTable(ctx context.Context, c *dynamodb.Client, t *table) error {
	in := &dynamodb.CreateTableInput{
		TableName:   aws.String(t.name),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(t.pk), AttributeType: t.pkType},
		},
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String(t.pk), KeyType: types.KeyTypeHash}},
	}
	if t.sk != "" {
		in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String(t.sk), AttributeType: t.skType})
		in.KeySchema = append(in.KeySchema, types.KeySchemaElement{AttributeName: aws.String(t.sk), KeyType: types.KeyTypeRange})
	}
	var inUse *types.ResourceInUseException
	if _, err := c.CreateTable(ctx, in); err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("create table %s: %w", t.name, err)
	}
	return waitActive(ctx, c, t.name)
}

// waitActive waits until a table is active.
func waitActive(ctx context.Context, c *dynamodb.Client, name string) error {
	w := dynamodb.NewTableExistsWaiter(c, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, 2*time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, 5*time.Minute); err != nil {
		return fmt.Errorf("wait for table %s to become active: %w", name, err)
	}
	return nil
}
