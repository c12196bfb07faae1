package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/trail"
)

func newTrailCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "trail", Short: "Inspect a trail directory"}
	var from uint64
	var limit int
	var follow bool
	dump := &cobra.Command{
		Use:   "dump DIR",
		Short: "Print the trail's records in a readable form (like GoldenGate's logdump)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			segs, err := trail.Segments(args[0])
			if err != nil {
				return fmt.Errorf("open trail %s: %w", args[0], err)
			}
			r, err := trail.NewReader(args[0], from, trail.ReaderOptions{Follow: follow})
			if err != nil {
				return fmt.Errorf("open trail %s: %w", args[0], err)
			}
			defer r.Close()
			out := bufio.NewWriter(cmd.OutOrStdout())
			defer out.Flush()
			if len(segs) > 0 {
				// One header line: which source wrote the trail.
				fmt.Fprintf(out, "# trail %s: source=%s system_id=%016x segments=%d\n", args[0], segs[0].SourceKind, segs[0].SystemID, len(segs))
			}
			for n := 0; limit <= 0 || n < limit; n++ {
				rec, err := r.Next(cmd.Context())
				if errors.Is(err, io.EOF) || (err != nil && cmd.Context().Err() != nil) {
					return nil
				}
				if err != nil {
					return err
				}
				writeRecord(out, rec)
				if follow {
					out.Flush()
				}
			}
			return nil
		},
	}
	dump.Flags().Uint64Var(&from, "from", 0, "first record sequence number to print")
	dump.Flags().IntVar(&limit, "limit", 0, "print at most N records (0: all)")
	dump.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing records as the trail grows")
	cmd.AddCommand(dump)
	return cmd
}

// writeRecord prints one record on one line.
func writeRecord(w io.Writer, rec trail.Record) {
	fmt.Fprintf(w, "%-8d %-8s ", rec.Seq, strings.ToUpper(rec.Type.String()))
	switch rec.Type {
	case trail.RecordBegin:
		if rec.Tx.FinalLSN == 0 {
			// Forwarded before its commit: the COMMIT says where it commits.
			fmt.Fprintf(w, "xid=%d forwarded", rec.Tx.XID)
			break
		}
		fmt.Fprintf(w, "xid=%d final_lsn=%s commit_time=%s", rec.Tx.XID, rec.Tx.FinalLSN, rec.Tx.CommitTime.UTC().Format(time.RFC3339Nano))
	case trail.RecordCommit:
		fmt.Fprintf(w, "xid=%d commit_lsn=%s end_lsn=%s", rec.Tx.XID, rec.Tx.CommitLSN, rec.Tx.EndLSN)
		if rec.Tx.Origin != "" {
			fmt.Fprintf(w, " origin=%s", rec.Tx.Origin)
		}
	case trail.RecordSchema:
		r := rec.Relation
		fmt.Fprintf(w, "%s oid=%d identity=%c columns=(", r.QualifiedName(), r.OID, r.ReplicaIdentity)
		for i, c := range r.Columns {
			if i > 0 {
				io.WriteString(w, ", ")
			}
			fmt.Fprintf(w, "%s %s", c.Name, typeName(c))
			if isPK(r, i) {
				io.WriteString(w, " pk")
			}
		}
		io.WriteString(w, ")")
	case trail.RecordChange, trail.RecordMessage:
		writeChange(w, rec.Change)
	}
	io.WriteString(w, "\n")
}

func writeChange(w io.Writer, c *change.Change) {
	fmt.Fprintf(w, "%s lsn=%s", c.Op, c.LSN)
	switch c.Op {
	case change.OpInsert, change.OpUpdate, change.OpDelete:
		fmt.Fprintf(w, " %s", c.Relation.QualifiedName())
		if c.Old != nil {
			if c.OldKeyOnly {
				io.WriteString(w, " key=")
			} else {
				io.WriteString(w, " old=")
			}
			writeRow(w, c.Relation, c.Old)
		}
		if c.New != nil {
			io.WriteString(w, " new=")
			writeRow(w, c.Relation, c.New)
		}
	case change.OpTruncate:
		for i, r := range c.Truncate.Relations {
			if i > 0 {
				io.WriteString(w, ",")
			}
			fmt.Fprintf(w, " %s", r.QualifiedName())
		}
		if c.Truncate.Cascade {
			io.WriteString(w, " cascade")
		}
		if c.Truncate.RestartIdentity {
			io.WriteString(w, " restart_identity")
		}
	case change.OpMessage:
		fmt.Fprintf(w, " transactional=%v prefix=%q content=%q", c.Message.Transactional, c.Message.Prefix, truncate(string(c.Message.Content), 200))
	}
}

func writeRow(w io.Writer, rel *change.Relation, row change.Row) {
	io.WriteString(w, "{")
	first := true
	for i, v := range row {
		if v.Kind == change.ValueAbsent {
			continue
		}
		if !first {
			io.WriteString(w, ", ")
		}
		first = false
		name := fmt.Sprintf("#%d", i)
		if i < len(rel.Columns) {
			name = rel.Columns[i].Name
		}
		if v.HasData() {
			fmt.Fprintf(w, "%s=%q", name, truncate(v.String(), 200))
		} else {
			fmt.Fprintf(w, "%s=%s", name, v.String())
		}
	}
	io.WriteString(w, "}")
}

func typeName(c change.Column) string {
	if c.TypeName != "" {
		return c.TypeName
	}
	return fmt.Sprintf("oid:%d", c.TypeOID)
}

func isPK(r *change.Relation, col int) bool {
	for _, k := range r.PrimaryKey {
		if k == col {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("…(%d bytes)", len(s))
}
