package verify

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// WriteJSON writes the result as one JSON document.
func (r *Result) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// WriteText writes one line per table (rows, ranges, result, time), the
// differing keys under it, and a summary line.
func (r *Result) WriteText(w io.Writer) {
	how := "static: targets compared as they are (exact once the source takes no writes)"
	if r.Mode == "held" {
		how = "held: every sink stopped exactly there while its target was pinned"
	}
	fmt.Fprintf(w, "source snapshot at %s (%s)\n", r.LSN, how)
	var tables, differ int
	var rows int64
	for _, t := range r.Targets {
		fmt.Fprintf(w, "target %s", t.Sink)
		if t.Position != "" {
			fmt.Fprintf(w, " (applied up to %s)", t.Position)
		}
		fmt.Fprintln(w)
		width := 0
		for _, x := range t.Tables {
			width = max(width, utf8.RuneCountInString(x.label()))
		}
		for _, x := range t.Tables {
			tables++
			rows += x.Rows
			state := "ok"
			if !x.Match {
				state = "DIFFERS"
				differ++
			}
			if x.Repaired > 0 {
				state += fmt.Sprintf(" (repaired %d ranges)", x.Repaired)
			}
			pad := strings.Repeat(" ", width-utf8.RuneCountInString(x.label()))
			fmt.Fprintf(w, "  %s%s  rows %d/%d  ranges %d  %s  %.2fs\n", x.label(), pad, x.Rows, x.TargetRows, x.Ranges, state, x.Seconds)
			if x.Error != "" {
				fmt.Fprintf(w, "      %s\n", x.Error)
			}
			keys(w, "missing on target", x.Missing, x.MissingCount)
			keys(w, "extra on target", x.Extra, x.ExtraCount)
			keys(w, "changed", x.Changed, x.ChangedCount)
		}
	}
	verdict := "all match"
	if differ > 0 {
		verdict = fmt.Sprintf("%d differ", differ)
	}
	fmt.Fprintf(w, "summary: %s on %s, %s; %d source rows compared in %.1fs\n",
		plural(tables, "table"), plural(len(r.Targets), "target"), verdict, rows, r.Seconds)
}

func (x TableResult) label() string {
	if x.Source == x.Target {
		return x.Source
	}
	return x.Source + " → " + x.Target
}

func keys(w io.Writer, what string, list []string, n int64) {
	if n == 0 {
		return
	}
	more := ""
	if int64(len(list)) < n {
		more = fmt.Sprintf(" … (%d in all)", n)
	}
	if len(list) == 0 {
		fmt.Fprintf(w, "      %s: %d rows (no primary key: rows cannot be named)\n", what, n)
		return
	}
	fmt.Fprintf(w, "      %s: %s%s\n", what, strings.Join(list, ", "), more)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
