package decode_test

import (
	"encoding/binary"
	"fmt"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/decode"
)

// Example decodes a small session: a Relation, then a transaction with one
// insert. In cdcd the messages are the WALData of the XLogData messages of a
// replication connection.
func Example() {
	be := binary.BigEndian
	rel := []byte("R")
	rel = be.AppendUint32(rel, 16384)
	rel = append(rel, "public\x00users\x00d"...)
	rel = be.AppendUint16(rel, 2)
	rel = append(rel, "\x01id\x00"...)
	rel = be.AppendUint32(be.AppendUint32(rel, 20), 0xFFFFFFFF) // int8, no typmod
	rel = append(rel, "\x00name\x00"...)
	rel = be.AppendUint32(be.AppendUint32(rel, 25), 0xFFFFFFFF) // text
	begin := be.AppendUint32(be.AppendUint64(be.AppendUint64([]byte("B"), 0x16B374D848), 0), 700)
	ins := be.AppendUint32([]byte("I"), 16384)
	ins = be.AppendUint16(append(ins, 'N'), 2)
	ins = append(be.AppendUint32(append(ins, 't'), 2), "42"...)
	ins = append(ins, 'n')
	commit := be.AppendUint64(be.AppendUint64(be.AppendUint64([]byte("C\x00"), 0x16B374D848), 0x16B374D878), 0)

	d := decode.New()
	for _, msg := range [][]byte{rel, begin, ins, commit} {
		ev, err := d.Decode(change.LSN(0x16B374D800), msg)
		if err != nil {
			fmt.Println(err)
			return
		}
		switch ev.Kind {
		case decode.EventRelation:
			// Capture sets the real primary key here, before decoding on.
			ev.Relation.PrimaryKey = []int{0}
			fmt.Println("relation", ev.Relation.QualifiedName(), ev.Relation.Columns[1].TypeName)
		case decode.EventBegin:
			fmt.Println("begin xid", ev.Tx.XID)
		case decode.EventChange:
			fmt.Println(ev.Change.Op, ev.Change.Relation.Name, ev.Change.New)
		case decode.EventCommit:
			fmt.Println("commit, resume from", ev.Tx.EndLSN)
		}
	}
	// Output:
	// relation public.users text
	// begin xid 700
	// insert users [42 <null>]
	// commit, resume from 16/B374D878
}
