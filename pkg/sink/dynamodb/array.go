package dynamodb

import (
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cdcd-io/cdcd/pkg/pgarray"
)

// parseArray converts PostgreSQL's array text output into a list, nested
// for several dimensions; elem converts one element's text (which it must
// not keep). NULL elements become NULL attributes.
func parseArray(s []byte, elem func([]byte) (types.AttributeValue, error)) (types.AttributeValue, error) {
	b := listBuilder{elem: elem}
	var p pgarray.Parser
	if err := p.Walk(s, &b); err != nil {
		return nil, err
	}
	return b.root, nil
}

// listBuilder builds the nested L attributes of a walked array.
type listBuilder struct {
	elem func([]byte) (types.AttributeValue, error)
	open []*types.AttributeValueMemberL
	root types.AttributeValue
}

func (b *listBuilder) add(v types.AttributeValue) {
	if n := len(b.open); n > 0 {
		b.open[n-1].Value = append(b.open[n-1].Value, v)
	} else {
		b.root = v
	}
}

func (b *listBuilder) Open(int) error {
	l := &types.AttributeValueMemberL{Value: []types.AttributeValue{}}
	b.add(l)
	b.open = append(b.open, l)
	return nil
}

func (b *listBuilder) Close() error {
	b.open = b.open[:len(b.open)-1]
	return nil
}

func (b *listBuilder) Elem(_ int, text []byte, null bool) error {
	if null {
		b.add(&types.AttributeValueMemberNULL{Value: true})
		return nil
	}
	v, err := b.elem(text)
	if err != nil {
		return err
	}
	b.add(v)
	return nil
}
