package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// Error is a configuration error: a value that cannot be parsed or is not
// allowed, or a missing one. Every error Parse and Load return is one (a
// caller tells a bad file from a failure to run with errors.As; `cdcd`
// exits 2 for it).
type Error struct {
	// File is the configuration file's path (Load); empty for Parse.
	File string
	// Path is the key path, e.g. trail.segment_bytes or sinks[ddb].dsn
	// (a sink is named by its name when it has one). Empty for errors
	// about the whole file.
	Path string
	// Line is the 1-based line of the value in the file; 0 when the key is
	// absent.
	Line int
	// Err says what is wrong and how to fix it.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File + ": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		if e.Line > 0 {
			fmt.Fprintf(&b, " (line %d)", e.Line)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// valueError is what a field's UnmarshalYAML returns: Parse adds the node's
// path and line.
type valueError struct {
	node ast.Node
	err  error
}

func (e *valueError) Error() string { return e.err.Error() }

func line(n ast.Node) int {
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

// keyPath turns goccy's "$.sinks[2].batch.max_delay" into
// "sinks[2].batch.max_delay"; nameSinks later replaces the index by the
// sink's name.
func keyPath(n ast.Node) string {
	return strings.TrimPrefix(strings.TrimPrefix(n.GetPath(), "$"), ".")
}

// decodeError turns an error of the YAML decoder into an *Error naming the
// key and its line.
func decodeError(file *ast.File, err error) error {
	var ve *valueError
	if errors.As(err, &ve) {
		return &Error{Path: keyPath(ve.node), Line: line(ve.node), Err: ve.err}
	}
	var ye yaml.Error
	if !errors.As(err, &ye) {
		return &Error{Err: err}
	}
	tk := ye.GetToken()
	msg := ye.GetMessage()
	if tk == nil || tk.Position == nil {
		return &Error{Err: errors.New(msg)}
	}
	e := &Error{Line: tk.Position.Line, Err: errors.New(msg)}
	if n := nodeAt(file, tk); n != nil {
		e.Path = keyPath(n)
	}
	if strings.HasPrefix(msg, "unknown field") {
		e.Err = fmt.Errorf("unknown key %s: check its spelling and nesting against configs/cdcd.yaml", strconv.Quote(tk.Value))
	}
	if e.Path == "" {
		e.Path = fmt.Sprintf("line %d", e.Line)
		e.Line = 0
	}
	return e
}

// nodeAt finds the node whose token is tk (for a key: the key's node, whose
// path is the key's).
func nodeAt(file *ast.File, tk *token.Token) ast.Node {
	if file == nil {
		return nil
	}
	var found ast.Node
	for _, d := range file.Docs {
		ast.Walk(visitor(func(n ast.Node) bool {
			if found != nil {
				return false
			}
			if t := n.GetToken(); t != nil && t.Position != nil &&
				t.Position.Line == tk.Position.Line && t.Position.Column == tk.Position.Column {
				found = n
				return false
			}
			return true
		}), d)
	}
	return found
}

type visitor func(ast.Node) bool

func (v visitor) Visit(n ast.Node) ast.Visitor {
	if v(n) {
		return v
	}
	return nil
}

var sinkIndex = regexp.MustCompile(`^sinks\[(\d+)\]`)

// nameSinks names a sink in e's path by its name ("sinks[ddb].dsn"
// instead of "sinks[2].dsn") when the file gives it one.
func nameSinks(e *Error, file *ast.File) {
	m := sinkIndex.FindStringSubmatch(e.Path)
	if m == nil {
		return
	}
	if name := lookup(file, "sinks["+m[1]+"].name"); name != nil {
		if s, ok := name.(*ast.StringNode); ok && s.Value != "" {
			e.Path = "sinks[" + s.Value + "]" + e.Path[len(m[0]):]
		}
	}
}

// lookup returns the node at a key path such as "trail.dir" or
// "sinks[1].name", nil when the file does not have it.
func lookup(file *ast.File, path string) ast.Node {
	if file == nil {
		return nil
	}
	p, err := yaml.PathString("$." + path)
	if err != nil {
		return nil
	}
	n, err := p.FilterFile(file)
	if err != nil {
		return nil
	}
	return n
}
