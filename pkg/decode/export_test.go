package decode

// For the external benchmarks (hotpath_test.go): a session's wide Relation
// and a transaction of 100 inserts into it.
var (
	WideRelation = wideRel
	WideTx       = func() [][]byte {
		msgs := [][]byte{beginMsg(0x2000, t0, 700)}
		for range 100 {
			msgs = append(msgs, wideInsert)
		}
		return append(msgs, commitMsg(0x2000, 0x2030, t0))
	}()
)
