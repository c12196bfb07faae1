package decode

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"

	"github.com/cdcd-io/cdcd/pkg/change"
)

// The differential test: pglogrepl's independent parser is the oracle. For
// bytes our decoder accepts, both must read the same fields.

// oracleParse runs pglogrepl.Parse, turning its panics on garbage into errors.
func oracleParse(data []byte) (m pglogrepl.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("pglogrepl panicked: %v", r)
		}
	}()
	return pglogrepl.Parse(data)
}

// agree compares the event d decoded from data with pglogrepl's parse of the
// same bytes; it returns nil when they agree.
func agree(d *Decoder, data []byte, ev Event, m pglogrepl.Message) error {
	var errs []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	switch m := m.(type) {
	case *pglogrepl.BeginMessage:
		check(ev.Kind == EventBegin && ev.Tx != nil, "kind %s, want begin", ev.Kind)
		if ev.Tx != nil {
			check(uint64(ev.Tx.FinalLSN) == uint64(m.FinalLSN), "FinalLSN %s vs %s", ev.Tx.FinalLSN, m.FinalLSN)
			check(ev.Tx.XID == m.Xid, "XID %d vs %d", ev.Tx.XID, m.Xid)
			check(sameTime(ev.Tx.CommitTime, m.CommitTime), "CommitTime %s vs %s", ev.Tx.CommitTime, m.CommitTime)
		}
	case *pglogrepl.CommitMessage:
		check(ev.Kind == EventCommit && ev.Tx != nil, "kind %s, want commit", ev.Kind)
		if ev.Tx != nil {
			check(uint64(ev.Tx.CommitLSN) == uint64(m.CommitLSN), "CommitLSN %s vs %s", ev.Tx.CommitLSN, m.CommitLSN)
			check(uint64(ev.Tx.EndLSN) == uint64(m.TransactionEndLSN), "EndLSN %s vs %s", ev.Tx.EndLSN, m.TransactionEndLSN)
			check(sameTime(ev.Tx.CommitTime, m.CommitTime), "CommitTime %s vs %s", ev.Tx.CommitTime, m.CommitTime)
		}
	case *pglogrepl.OriginMessage:
		check(ev == Event{}, "origin: event %+v, want none", ev)
		check(d.tx != nil && d.tx.Origin == m.Name, "origin name %q", m.Name)
	case *pglogrepl.TypeMessage:
		check(ev == Event{}, "type: event %+v, want none", ev)
		check(d.types[m.DataType] == qualifiedType([]byte(m.Namespace), []byte(m.Name)),
			"type %d: %q vs %s.%s", m.DataType, d.types[m.DataType], m.Namespace, m.Name)
	case *pglogrepl.RelationMessage:
		r := ev.Relation
		check(ev.Kind == EventRelation && r != nil, "kind %s, want relation", ev.Kind)
		if r == nil {
			break
		}
		check(r.OID == m.RelationID && r.Schema == m.Namespace && r.Name == m.RelationName &&
			r.ReplicaIdentity == m.ReplicaIdentity, "relation %+v vs %+v", r, m)
		check(len(r.Columns) == len(m.Columns) && len(r.Columns) == int(m.ColumnNum), "columns %d vs %d", len(r.Columns), len(m.Columns))
		for i := 0; i < len(r.Columns) && i < len(m.Columns); i++ {
			c, mc := r.Columns[i], m.Columns[i]
			check(c.Name == mc.Name && c.TypeOID == mc.DataType && c.TypeMod == mc.TypeModifier && c.Key == (mc.Flags&1 != 0),
				"column %d: %+v vs %+v", i, c, mc)
		}
	case *pglogrepl.InsertMessage:
		c := ev.Change
		check(ev.Kind == EventChange && c != nil && c.Op == change.OpInsert, "insert: event %+v", ev)
		if c != nil {
			check(c.Relation.OID == m.RelationID, "relation %d vs %d", c.Relation.OID, m.RelationID)
			check(c.Old == nil, "insert has an old row")
			errs = append(errs, tupleDiff("new", c.Relation, c.New, m.Tuple, false)...)
		}
	case *pglogrepl.UpdateMessage:
		c := ev.Change
		check(ev.Kind == EventChange && c != nil && c.Op == change.OpUpdate, "update: event %+v", ev)
		if c != nil {
			check(c.Relation.OID == m.RelationID, "relation %d vs %d", c.Relation.OID, m.RelationID)
			check(c.OldKeyOnly == (m.OldTupleType == 'K'), "OldKeyOnly %v vs %q", c.OldKeyOnly, m.OldTupleType)
			check((c.Old == nil) == (m.OldTuple == nil), "old row presence")
			if m.OldTuple != nil {
				errs = append(errs, tupleDiff("old", c.Relation, c.Old, m.OldTuple, c.OldKeyOnly)...)
			}
			errs = append(errs, tupleDiff("new", c.Relation, c.New, m.NewTuple, false)...)
		}
	case *pglogrepl.DeleteMessage:
		c := ev.Change
		check(ev.Kind == EventChange && c != nil && c.Op == change.OpDelete, "delete: event %+v", ev)
		if c != nil {
			check(c.Relation.OID == m.RelationID, "relation %d vs %d", c.Relation.OID, m.RelationID)
			check(c.OldKeyOnly == (m.OldTupleType == 'K'), "OldKeyOnly %v vs %q", c.OldKeyOnly, m.OldTupleType)
			errs = append(errs, tupleDiff("old", c.Relation, c.Old, m.OldTuple, c.OldKeyOnly)...)
		}
	case *pglogrepl.TruncateMessage:
		c := ev.Change
		check(ev.Kind == EventChange && c != nil && c.Op == change.OpTruncate && c.Truncate != nil, "truncate: event %+v", ev)
		if c != nil && c.Truncate != nil {
			tr := c.Truncate
			check(tr.Cascade == (m.Option&pglogrepl.TruncateOptionCascade != 0), "cascade")
			check(tr.RestartIdentity == (m.Option&pglogrepl.TruncateOptionRestartIdentity != 0), "restart identity")
			check(len(tr.Relations) == len(m.RelationIDs) && len(tr.Relations) == int(m.RelationNum), "relation count")
			for i := 0; i < len(tr.Relations) && i < len(m.RelationIDs); i++ {
				check(tr.Relations[i].OID == m.RelationIDs[i], "relation %d: %d vs %d", i, tr.Relations[i].OID, m.RelationIDs[i])
			}
		}
	case *pglogrepl.LogicalDecodingMessage:
		c := ev.Change
		check(ev.Kind == EventChange && c != nil && c.Op == change.OpMessage && c.Message != nil, "message: event %+v", ev)
		if c != nil && c.Message != nil {
			if data[1] <= 1 { // pglogrepl tests flags == 1, the protocol flags&1
				check(c.Message.Transactional == m.Transactional, "transactional %v vs %v", c.Message.Transactional, m.Transactional)
			}
			check(c.Message.Prefix == m.Prefix, "prefix %q vs %q", c.Message.Prefix, m.Prefix)
			check(bytes.Equal(c.Message.Content, m.Content), "content %q vs %q", c.Message.Content, m.Content)
		}
	default:
		errs = append(errs, fmt.Sprintf("pglogrepl returned %T", m))
	}
	if len(errs) > 0 {
		return fmt.Errorf("decoder and pglogrepl disagree on %q: %v", data, errs)
	}
	return nil
}

// sameTime compares commit times where pglogrepl's conversion does not
// overflow (it multiplies microseconds since 1970 by 1000 in an int64).
func sameTime(ours, theirs time.Time) bool {
	if y := ours.Year(); y < 1800 || y > 2200 {
		return true
	}
	return ours.Equal(theirs) && ours.Location() == time.UTC
}

func tupleDiff(which string, rel *change.Relation, row change.Row, td *pglogrepl.TupleData, oldKey bool) []string {
	if td == nil {
		return []string{which + ": pglogrepl has no tuple"}
	}
	if len(row) != len(td.Columns) || len(row) != len(rel.Columns) {
		return []string{fmt.Sprintf("%s: %d values, pglogrepl %d, relation %d", which, len(row), len(td.Columns), len(rel.Columns))}
	}
	var errs []string
	for i, v := range row {
		mc := td.Columns[i]
		var want change.Value
		switch mc.DataType {
		case 'n':
			want.Kind = change.ValueNull
			if oldKey && !rel.Columns[i].Key {
				want.Kind = change.ValueAbsent
			}
		case 'u':
			want.Kind = change.ValueUnchanged
		case 't':
			want = change.Value{Kind: change.ValueText, Data: mc.Data}
		case 'b':
			want = change.Value{Kind: change.ValueBinary, Data: mc.Data}
		}
		if v.Kind != want.Kind || !bytes.Equal(v.Data, want.Data) || (v.Data == nil) != (v.Kind < change.ValueText || v.Kind > change.ValueBinary) {
			errs = append(errs, fmt.Sprintf("%s column %d: %v (%s) vs %q %q", which, i, v, v.Kind, mc.DataType, mc.Data))
		}
	}
	return errs
}

func TestAgreesWithPglogrepl(t *testing.T) {
	msgs := append(sampleStream(),
		relationMsg(oidUsers, "public", "users", 'i', col{true, "id", oidInt8, -1}, col{true, "email", oidVarchar, 259}),
		beginMsg(0x3000, time.Date(1999, 1, 1, 0, 0, 0, 1000, time.UTC), 0xFFFFFFFF),
		updateMsg(oidUsers, 'K', []tv{tT("1"), tT("a@b")}, tT("1"), tT("c@d")),
		deleteMsg(oidUsers, 'K', tT("1"), tN()),
		messageMsg(1, 0xFFFFFFFFFFFFFFFF, "p", "\x00\x01binary\xff"),
		insertMsg(oidUsers, tB(), tU()),
		truncateMsg(0, oidUsers),
		commitMsg(0x3000, 0xFFFFFFFFFFFFFFFF, t0),
	)
	d := New()
	for i, data := range msgs {
		ev, err := d.Decode(change.LSN(i), data)
		require.NoError(t, err, "message %d", i)
		m, err := oracleParse(data)
		require.NoError(t, err, "pglogrepl on message %d", i)
		require.NoError(t, agree(d, data, ev, m))
	}
}

// TestOracleDetectsDifferences guards the differential test against
// comparing nothing.
func TestOracleDetectsDifferences(t *testing.T) {
	d := inTx(t)
	a := insertMsg(oidUsers, tT("1"), tT("ann"), tN(), tT("happy"))
	b := insertMsg(oidUsers, tT("1"), tT("ann"), tU(), tT("happy"))
	ev, err := d.Decode(1, a)
	require.NoError(t, err)
	m, err := oracleParse(b)
	require.NoError(t, err)
	require.ErrorContains(t, agree(d, a, ev, m), "new column 2")

	_, err = oracleParse(nil)
	require.ErrorContains(t, err, "pglogrepl panicked")
}
