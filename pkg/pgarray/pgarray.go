// Package pgarray reads PostgreSQL's array text output ("{1,2,NULL}",
// "{{a,b},{c,d}}", `{"x y","q\"z"}`, "[0:1]={1,2}") for sinks that turn
// arrays into their own nested lists (Kafka's JSON, DynamoDB's L).
package pgarray

import (
	"bytes"
	"fmt"
)

// Visitor receives an array's levels and elements in order.
type Visitor interface {
	// Open starts a level ("{"), the i-th item of the enclosing level (0
	// for the outermost).
	Open(i int) error
	// Close ends the level opened last.
	Close() error
	// Elem is the i-th item of the current level: its unescaped text, or
	// null for an unquoted NULL. text is valid only during the call.
	Elem(i int, text []byte, null bool) error
}

// Parser walks arrays. Its zero value is ready; it reuses one buffer for
// quoted elements, so it is not safe for concurrent use.
type Parser struct {
	s       []byte
	i       int
	scratch []byte
}

// Walk parses s, calling v for its structure and elements. Explicit lower
// bounds ("[1:3]=") are skipped: the elements keep their order.
func (p *Parser) Walk(s []byte, v Visitor) error {
	if len(s) > 0 && s[0] == '[' {
		i := bytes.IndexByte(s, '=')
		if i < 0 {
			return fmt.Errorf("array %q: dimensions without '='", s)
		}
		s = s[i+1:]
	}
	p.s, p.i = s, 0
	if err := p.level(0, v); err != nil {
		return err
	}
	if p.i != len(s) {
		return fmt.Errorf("array %q: trailing data at byte %d", s, p.i)
	}
	return nil
}

func (p *Parser) errf(what string) error {
	return fmt.Errorf("array %q: %s at byte %d", p.s, what, p.i)
}

// level parses one {…} level, the at-th item of its parent.
func (p *Parser) level(at int, v Visitor) error {
	if p.i >= len(p.s) || p.s[p.i] != '{' {
		return p.errf("want '{'")
	}
	p.i++
	if err := v.Open(at); err != nil {
		return err
	}
	p.space()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return v.Close()
	}
	for n := 0; ; n++ {
		p.space()
		if p.i >= len(p.s) {
			return p.errf("unterminated")
		}
		var err error
		switch p.s[p.i] {
		case '{':
			err = p.level(n, v)
		case '"':
			err = p.quoted(n, v)
		default:
			err = p.bare(n, v)
		}
		if err != nil {
			return err
		}
		p.space()
		if p.i >= len(p.s) {
			return p.errf("unterminated")
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return v.Close()
		default:
			return p.errf("want ',' or '}'")
		}
	}
}

func (p *Parser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *Parser) quoted(n int, v Visitor) error {
	p.i++ // opening quote
	buf := p.scratch[:0]
	for {
		if p.i >= len(p.s) {
			return p.errf("unterminated quoted element")
		}
		c := p.s[p.i]
		p.i++
		if c == '"' {
			break
		}
		if c == '\\' {
			if p.i >= len(p.s) {
				return p.errf("dangling backslash")
			}
			c = p.s[p.i]
			p.i++
		}
		buf = append(buf, c)
	}
	p.scratch = buf
	return v.Elem(n, buf, false)
}

func (p *Parser) bare(n int, v Visitor) error {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != ',' && p.s[p.i] != '}' {
		if p.s[p.i] == '{' || p.s[p.i] == '"' {
			return p.errf("unexpected character")
		}
		p.i++
	}
	el := bytes.TrimRight(p.s[start:p.i], " \t\r\n")
	if len(el) == 0 {
		return p.errf("empty element")
	}
	null := len(el) == 4 && bytes.EqualFold(el, []byte("NULL"))
	return v.Elem(n, el, null)
}
