package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// A reference in a string value: ${NAME} (an environment variable) or
// ${file:/path} (a file's content, one trailing newline trimmed — the way
// systemd credentials and Kubernetes secrets are mounted).
var ref = regexp.MustCompile(`\$\{(?:file:([^}]+)|([A-Za-z_][A-Za-z0-9_]*))\}`)

// expand replaces the references in every string value of the parsed
// document. It runs after parsing, on values only, so a secret may hold any
// bytes (#, quotes, newlines) and can never add a key or end a value early;
// keys are never expanded, and an expanded value is not expanded again.
func expand(node ast.Node) error {
	switch n := node.(type) {
	case nil:
		return nil
	case *ast.DocumentNode:
		return expand(n.Body)
	case *ast.MappingNode:
		for _, v := range n.Values {
			if err := expand(v.Value); err != nil {
				return err
			}
		}
	case *ast.MappingValueNode:
		return expand(n.Value)
	case *ast.SequenceNode:
		for _, v := range n.Values {
			if err := expand(v); err != nil {
				return err
			}
		}
	case *ast.TagNode:
		return expand(n.Value)
	case *ast.AnchorNode:
		return expand(n.Value)
	case *ast.LiteralNode:
		return expand(n.Value)
	case *ast.StringNode:
		v, err := expandString(n.Value)
		if err != nil {
			return &Error{Path: keyPath(n), Line: line(n), Err: err}
		}
		n.Value = v
	}
	return nil
}

// expandString replaces the references in one value.
func expandString(s string) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var firstErr error
	out := ref.ReplaceAllStringFunc(s, func(m string) string {
		sub := ref.FindStringSubmatch(m)
		if path := sub[1]; path != "" {
			b, err := os.ReadFile(path)
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("read secret file referenced as ${file:%s}: %w", path, err)
				}
				return ""
			}
			v := strings.TrimSuffix(string(b), "\n")
			return strings.TrimSuffix(v, "\r")
		}
		v, ok := os.LookupEnv(sub[2])
		if !ok && firstErr == nil {
			firstErr = fmt.Errorf("environment variable %s is not set (referenced as ${%s})", sub[2], sub[2])
		}
		return v
	})
	return out, firstErr
}
