package pgarray

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// trace records what a walk visits.
type trace struct{ b strings.Builder }

func (t *trace) Open(i int) error { fmt.Fprintf(&t.b, "(%d ", i); return nil }
func (t *trace) Close() error     { t.b.WriteString(")"); return nil }
func (t *trace) Elem(i int, text []byte, null bool) error {
	if null {
		fmt.Fprintf(&t.b, "%d:null ", i)
	} else {
		fmt.Fprintf(&t.b, "%d:%q ", i, text)
	}
	return nil
}

func TestWalk(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{}`, `(0 )`},
		{`{1,2,NULL}`, `(0 0:"1" 1:"2" 2:null )`},
		{`{{a,b},{c,d}}`, `(0 (0 0:"a" 1:"b" )(1 0:"c" 1:"d" ))`},
		{`{"x y","q\"z","NULL",null}`, `(0 0:"x y" 1:"q\"z" 2:"NULL" 3:null )`},
		{`[0:1]={1,2}`, `(0 0:"1" 1:"2" )`},
		{`{ a , b }`, `(0 0:"a" 1:"b" )`},
	} {
		var tr trace
		var p Parser
		require.NoError(t, p.Walk([]byte(tc.in), &tr), tc.in)
		require.Equal(t, tc.want, tr.b.String(), tc.in)
	}
	for _, in := range []string{``, `{1,2`, `{1,,2}`, `{"a}`, `{a"b}`, `{1}x`, `[1:2]{1}`} {
		var p Parser
		require.Error(t, p.Walk([]byte(in), &trace{}), in)
	}
}
