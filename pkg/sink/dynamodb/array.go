package dynamodb

import (
	"bytes"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// parseArray converts PostgreSQL's array text output ("{1,2,NULL}",
// "{{a,b},{c,d}}", `{"x y","q\"z"}`, "[0:1]={1,2}") into a list, nested for
// several dimensions; elem converts one element's text. NULL elements
// become NULL attributes.
func parseArray(s []byte, elem func([]byte) (types.AttributeValue, error)) (types.AttributeValue, error) {
	if len(s) > 0 && s[0] == '[' { // explicit lower bounds: "[1:3]={…}"
		i := bytes.IndexByte(s, '=')
		if i < 0 {
			return nil, fmt.Errorf("array %q: dimensions without '='", s)
		}
		s = s[i+1:]
	}
	p := arrayParser{s: s, elem: elem}
	v, err := p.level()
	if err != nil {
		return nil, err
	}
	if p.i != len(s) {
		return nil, fmt.Errorf("array %q: trailing data at byte %d", s, p.i)
	}
	return v, nil
}

type arrayParser struct {
	s    []byte
	i    int
	elem func([]byte) (types.AttributeValue, error)
}

func (p *arrayParser) errf(what string) error {
	return fmt.Errorf("array %q: %s at byte %d", p.s, what, p.i)
}

// level parses one {…} level.
func (p *arrayParser) level() (types.AttributeValue, error) {
	if p.i >= len(p.s) || p.s[p.i] != '{' {
		return nil, p.errf("want '{'")
	}
	p.i++
	l := &types.AttributeValueMemberL{Value: []types.AttributeValue{}}
	p.space()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return l, nil
	}
	for {
		p.space()
		if p.i >= len(p.s) {
			return nil, p.errf("unterminated")
		}
		var v types.AttributeValue
		var err error
		switch p.s[p.i] {
		case '{':
			v, err = p.level()
		case '"':
			v, err = p.quoted()
		default:
			v, err = p.bare()
		}
		if err != nil {
			return nil, err
		}
		l.Value = append(l.Value, v)
		p.space()
		if p.i >= len(p.s) {
			return nil, p.errf("unterminated")
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return l, nil
		default:
			return nil, p.errf("want ',' or '}'")
		}
	}
}

func (p *arrayParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *arrayParser) quoted() (types.AttributeValue, error) {
	p.i++ // opening quote
	var buf []byte
	for {
		if p.i >= len(p.s) {
			return nil, p.errf("unterminated quoted element")
		}
		c := p.s[p.i]
		p.i++
		if c == '"' {
			break
		}
		if c == '\\' {
			if p.i >= len(p.s) {
				return nil, p.errf("dangling backslash")
			}
			c = p.s[p.i]
			p.i++
		}
		buf = append(buf, c)
	}
	return p.elem(buf)
}

func (p *arrayParser) bare() (types.AttributeValue, error) {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != ',' && p.s[p.i] != '}' {
		if p.s[p.i] == '{' || p.s[p.i] == '"' {
			return nil, p.errf("unexpected character")
		}
		p.i++
	}
	el := bytes.TrimRight(p.s[start:p.i], " \t\r\n")
	if len(el) == 0 {
		return nil, p.errf("empty element")
	}
	if len(el) == 4 && bytes.EqualFold(el, []byte("NULL")) {
		return &types.AttributeValueMemberNULL{Value: true}, nil
	}
	return p.elem(el)
}
