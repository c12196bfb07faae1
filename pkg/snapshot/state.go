package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/checkpoint"
	"github.com/cdcd-io/cdcd/pkg/schema"
)

// State is a sink's snapshot plan and progress, kept in the trail directory
// as snapshot-<sink>.json and replaced atomically (write, fsync, rename,
// fsync the directory) after every change. Bulk-loading sinks record their
// finished chunks in the target itself, in the chunk's own transaction; the
// others in Done here, after the sink accepted the chunk's rows.
type State struct {
	// ID names the snapshot: its first consistent point and start time.
	ID string `json:"id"`
	// LSN is the consistent point of the snapshot the copy began under.
	LSN string `json:"lsn"`
	// Complete is set once every table is copied and finished.
	Complete bool `json:"complete"`
	// Tables are the tables to copy, in copy order.
	Tables []*TableState `json:"tables"`
}

// TableState is one table of a snapshot.
type TableState struct {
	// Table is the source table with its target name and columns.
	Table *schema.Table `json:"table"`
	// Skip is the consistent point of the snapshot this table's copy is
	// consistent with: the stream drops its changes in transactions that
	// committed before it.
	Skip string `json:"skip"`
	// Chunks split the table by primary-key ranges (one chunk: whole).
	Chunks []Chunk `json:"chunks"`
	// Done lists the finished chunk indexes (sinks without bulk loading).
	Done []int `json:"done,omitempty"`
	// Truncate empties the target table before the first chunk.
	Truncate bool `json:"truncate,omitempty"`
	// DeferredKey: the table was created without its primary key, to be
	// added once every chunk is loaded.
	DeferredKey bool `json:"deferred_key,omitempty"`
	// Finished: every chunk is loaded and the key added.
	Finished bool `json:"finished,omitempty"`
	// Binary: the chunks are copied in COPY's binary format.
	Binary bool `json:"binary,omitempty"`
	// Round counts the restarts of a table split into page ranges: each
	// copies the whole table again, truncating it first, under new chunk
	// IDs (see Runner.restartTables).
	Round int `json:"round,omitempty"`
}

// pageSplit reports a table split into page ranges.
func (t *TableState) pageSplit() bool {
	return len(t.Chunks) > 1 && t.Chunks[0].Pages
}

// Chunk is a primary-key range [Lo, Hi) in text form (nil is unbounded),
// or, with Pages set, the rows in heap pages [FromPage, ToPage) (ToPage 0
// is unbounded).
type Chunk struct {
	Lo []string `json:"lo,omitempty"`
	Hi []string `json:"hi,omitempty"`
	// Pages: the chunk is a range of heap pages (a keyless table's).
	Pages    bool  `json:"pages,omitempty"`
	FromPage int64 `json:"from_page,omitempty"`
	ToPage   int64 `json:"to_page,omitempty"`
}

func statePath(dir, sinkName string) string {
	return filepath.Join(dir, "snapshot-"+sinkName+".json")
}

// LoadState reads a sink's snapshot state; nil when there is none.
func LoadState(dir, sinkName string) (*State, error) {
	b, err := os.ReadFile(statePath(dir, sinkName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read snapshot state %s: %w (remove the file to start the snapshot over)", statePath(dir, sinkName), err)
	}
	return &s, nil
}

func storeState(dir, sinkName string, s *State) error {
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return err
	}
	if err := checkpoint.WriteFile(statePath(dir, sinkName), b); err != nil {
		return fmt.Errorf("write snapshot state: %w", err)
	}
	return nil
}

// SkipLSNs returns, per source table ("schema.table"), the consistent point
// its copy holds: the stream must drop that table's changes of transactions
// committed before it. Nil when there is no complete snapshot.
func (s *State) SkipLSNs() (map[string]change.LSN, error) {
	if s == nil || !s.Complete {
		return nil, nil
	}
	m := make(map[string]change.LSN, len(s.Tables))
	for _, t := range s.Tables {
		l, err := change.ParseLSN(t.Skip)
		if err != nil {
			return nil, fmt.Errorf("snapshot state: table %s: %w", t.Table.Source, err)
		}
		m[t.Table.Source.String()] = l
	}
	return m, nil
}

// Skips reports whether any of the sinks' snapshot states in dir holds
// consistent points that changes are dropped by (SkipLSNs), or cannot be
// read: a source must not then forward transactions before their commit
// position is known.
func Skips(dir string, sinks ...string) bool {
	for _, name := range sinks {
		st, err := LoadState(dir, name)
		if err != nil {
			return true
		}
		if skip, err := st.SkipLSNs(); err != nil || len(skip) > 0 {
			return true
		}
	}
	return false
}

func (t *TableState) done(i int) bool {
	for _, d := range t.Done {
		if d == i {
			return true
		}
	}
	return false
}

func chunkID(t *TableState, i int) string {
	if t.Round > 0 {
		return fmt.Sprintf("%s#r%d.%d", t.Table.Target, t.Round, i)
	}
	return fmt.Sprintf("%s#%d", t.Table.Target, i)
}

func truncateID(t *TableState) string {
	if t.Round > 0 {
		return fmt.Sprintf("%s#r%d.truncate", t.Table.Target, t.Round)
	}
	return t.Table.Target.String() + "#truncate"
}
