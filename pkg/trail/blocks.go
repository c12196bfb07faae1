package trail

import "github.com/cdcd-io/cdcd/pkg/change"

// Block sizes: large enough that a record costs a small fraction of an
// allocation, small enough that a record kept long keeps little else alive.
const (
	blockBytes   = 32 << 10
	blockChanges = 64
	blockTxs     = 64
	blockValues  = 512
)

// blocks hands out the memory of decoded records — payload copies, changes,
// rows and transactions — carved from shared blocks instead of allocated one
// by one. A block is never reused: it becomes garbage once no record carved
// from it is referenced, so a record stays valid as long as its holder keeps
// it (and keeps at most one block of each kind alive with it). A nil *blocks
// allocates each piece on its own.
type blocks struct {
	bytes   []byte
	changes []change.Change
	txs     []change.Tx
	values  []change.Value
}

// copyBytes returns a copy of p with its capacity clipped.
func (a *blocks) copyBytes(p []byte) []byte {
	if a == nil || len(p) > blockBytes/8 {
		return append([]byte(nil), p...)
	}
	if cap(a.bytes)-len(a.bytes) < len(p) {
		a.bytes = make([]byte, 0, blockBytes)
	}
	off := len(a.bytes)
	a.bytes = append(a.bytes, p...)
	return a.bytes[off:len(a.bytes):len(a.bytes)]
}

// change returns a zero Change.
func (a *blocks) change() *change.Change {
	if a == nil {
		return new(change.Change)
	}
	if len(a.changes) == 0 {
		a.changes = make([]change.Change, blockChanges)
	}
	c := &a.changes[0]
	a.changes = a.changes[1:]
	return c
}

// tx returns a zero Tx.
func (a *blocks) tx() *change.Tx {
	if a == nil {
		return new(change.Tx)
	}
	if len(a.txs) == 0 {
		a.txs = make([]change.Tx, blockTxs)
	}
	t := &a.txs[0]
	a.txs = a.txs[1:]
	return t
}

// row returns n zero values with the capacity clipped, so that appending to
// the row never writes into another's.
func (a *blocks) row(n int) change.Row {
	if a == nil || n > blockValues/8 {
		return make(change.Row, n)
	}
	if len(a.values) < n {
		a.values = make([]change.Value, blockValues)
	}
	r := a.values[:n:n]
	a.values = a.values[n:]
	return r
}
