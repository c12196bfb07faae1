package kafka

import (
	"bytes"
	"fmt"
)

// appendArray converts PostgreSQL's array text output ("{1,2,NULL}",
// "{{a,b},{c,d}}", `{"x y","q\"z"}`, "[0:1]={1,2}") into a JSON array,
// nested for several dimensions; elem appends the JSON form of one element's
// text. NULL elements become null. Element text is unescaped into the
// values' scratch buffer, so elem must not keep it.
func (e *values) appendArray(dst, s []byte, elem func(dst, el []byte) ([]byte, error)) ([]byte, error) {
	if len(s) > 0 && s[0] == '[' { // explicit lower bounds: "[1:3]={…}"
		i := bytes.IndexByte(s, '=')
		if i < 0 {
			return dst, fmt.Errorf("array %q: dimensions without '='", s)
		}
		s = s[i+1:]
	}
	p := arrayParser{s: s, e: e, elem: elem}
	dst, err := p.level(dst)
	if err != nil {
		return dst, err
	}
	if p.i != len(s) {
		return dst, fmt.Errorf("array %q: trailing data at byte %d", s, p.i)
	}
	return dst, nil
}

type arrayParser struct {
	s    []byte
	i    int
	e    *values
	elem func(dst, el []byte) ([]byte, error)
}

func (p *arrayParser) errf(what string) error {
	return fmt.Errorf("array %q: %s at byte %d", p.s, what, p.i)
}

// level parses one {…} level.
func (p *arrayParser) level(dst []byte) ([]byte, error) {
	if p.i >= len(p.s) || p.s[p.i] != '{' {
		return dst, p.errf("want '{'")
	}
	p.i++
	dst = append(dst, '[')
	p.space()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return append(dst, ']'), nil
	}
	for n := 0; ; n++ {
		if n > 0 {
			dst = append(dst, ',')
		}
		p.space()
		if p.i >= len(p.s) {
			return dst, p.errf("unterminated")
		}
		var err error
		switch p.s[p.i] {
		case '{':
			dst, err = p.level(dst)
		case '"':
			dst, err = p.quoted(dst)
		default:
			dst, err = p.bare(dst)
		}
		if err != nil {
			return dst, err
		}
		p.space()
		if p.i >= len(p.s) {
			return dst, p.errf("unterminated")
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return append(dst, ']'), nil
		default:
			return dst, p.errf("want ',' or '}'")
		}
	}
}

func (p *arrayParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *arrayParser) quoted(dst []byte) ([]byte, error) {
	p.i++ // opening quote
	buf := p.e.scratch[:0]
	for {
		if p.i >= len(p.s) {
			return dst, p.errf("unterminated quoted element")
		}
		c := p.s[p.i]
		p.i++
		if c == '"' {
			break
		}
		if c == '\\' {
			if p.i >= len(p.s) {
				return dst, p.errf("dangling backslash")
			}
			c = p.s[p.i]
			p.i++
		}
		buf = append(buf, c)
	}
	p.e.scratch = buf
	return p.elem(dst, buf)
}

func (p *arrayParser) bare(dst []byte) ([]byte, error) {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != ',' && p.s[p.i] != '}' {
		if p.s[p.i] == '{' || p.s[p.i] == '"' {
			return dst, p.errf("unexpected character")
		}
		p.i++
	}
	el := bytes.TrimRight(p.s[start:p.i], " \t\r\n")
	if len(el) == 0 {
		return dst, p.errf("empty element")
	}
	if len(el) == 4 && bytes.EqualFold(el, []byte("NULL")) {
		return append(dst, "null"...), nil
	}
	return p.elem(dst, el)
}
