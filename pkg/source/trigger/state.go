package trigger

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/checkpoint"
)

// StateFile is the name of the position state file in Config.StateDir.
const StateFile = "trigger.position"

// stateHeader is the first line of a state file: the format and its version.
const stateHeader = "cdcd trigger position 1"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// state is what the state file holds: "the batch Prev→Cur is being
// written to the trail after Base" (Prev == Cur: no batch is in flight,
// the next poll starts from Cur and its first transaction follows Base).
// See the package documentation, "The trigger source", for the format and
// how Start uses it.
type state struct {
	// SystemID is the change log's identity (cdcd.source_id): a state file
	// is never used with another change log.
	SystemID uint64
	Prev     Snapshot
	Cur      Snapshot
	Base     change.LSN
}

// complete reports whether no batch is in flight.
func (s state) complete() bool { return sameSnapshot(s.Prev, s.Cur) }

func sameSnapshot(a, b Snapshot) bool {
	return a.Xmin == b.Xmin && a.Xmax == b.Xmax && slices.Equal(a.Xip, b.Xip)
}

// encode renders the state file's text; see the package documentation.
func (s state) encode() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nsystem %d\nprev %s\ncur %s\nbase %d\n", stateHeader, s.SystemID, s.Prev, s.Cur, uint64(s.Base))
	fmt.Fprintf(&b, "crc32c %08x\n", crc32.Checksum(b.Bytes(), castagnoli))
	return b.Bytes()
}

// decodeState parses a state file's text and verifies its checksum.
func decodeState(b []byte) (state, error) {
	i := bytes.LastIndex(b, []byte("crc32c "))
	if i < 0 || len(b) == 0 || b[len(b)-1] != '\n' {
		return state{}, errors.New("no checksum line (torn or not a state file)")
	}
	sum, err := strconv.ParseUint(strings.TrimSuffix(string(b[i+len("crc32c "):]), "\n"), 16, 32)
	if err != nil {
		return state{}, fmt.Errorf("checksum: %w", err)
	}
	if crc32.Checksum(b[:i], castagnoli) != uint32(sum) {
		return state{}, errors.New("checksum mismatch")
	}
	lines := strings.Split(strings.TrimSuffix(string(b[:i]), "\n"), "\n")
	if len(lines) != 5 || lines[0] != stateHeader {
		return state{}, fmt.Errorf("want %q and 4 fields, got %d lines", stateHeader, len(lines))
	}
	field := func(line, name string) (string, error) {
		v, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			return "", fmt.Errorf("line %q: want field %q", line, name)
		}
		return v, nil
	}
	var s state
	v, err := field(lines[1], "system")
	if err == nil {
		s.SystemID, err = strconv.ParseUint(v, 10, 64)
	}
	if err == nil {
		v, err = field(lines[2], "prev")
	}
	if err == nil {
		s.Prev, err = ParseSnapshot(v)
	}
	if err == nil {
		v, err = field(lines[3], "cur")
	}
	if err == nil {
		s.Cur, err = ParseSnapshot(v)
	}
	if err == nil {
		v, err = field(lines[4], "base")
	}
	if err == nil {
		var base uint64
		base, err = strconv.ParseUint(v, 10, 64)
		s.Base = change.LSN(base)
	}
	if err != nil {
		return state{}, err
	}
	if s.Prev.IsZero() || s.Cur.IsZero() {
		return state{}, errors.New("zero position")
	}
	return s, nil
}

// loadState reads the state file at path; ok is false when there is none.
// A file that does not parse or fails its checksum is an error, never
// "no state": starting over would skip or repeat transactions.
func loadState(path string) (s state, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return state{}, false, nil
	}
	if err != nil {
		return state{}, false, fmt.Errorf("read trigger source state: %w", err)
	}
	s, err = decodeState(b)
	if err != nil {
		return state{}, false, fmt.Errorf("trigger source state %s is corrupt: %w; restore it or start a new trail", path, err)
	}
	return s, true, nil
}

// storeState durably replaces the state file at path: a temporary file
// (mode 0600) is written and fsynced, renamed over path, and the directory
// fsynced, so a reader finds the old or the new state, never a torn one.
func storeState(path string, s state) error {
	if err := checkpoint.WriteFile(path, s.encode()); err != nil {
		return fmt.Errorf("store trigger source state: %w", err)
	}
	return nil
}
