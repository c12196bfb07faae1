package cutover

import (
	"encoding/json"
	"fmt"
	"io"
)

// WriteJSON writes the report as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// WriteText writes one line per step with its duration, then the outcome.
func (r *Report) WriteText(w io.Writer) {
	width := 0
	for _, s := range r.Steps {
		width = max(width, len(s.Name))
	}
	for _, s := range r.Steps {
		state := "ok"
		if s.Error != "" {
			state = "FAILED"
		}
		fmt.Fprintf(w, "%-*s  %7.3fs  %-6s  %s\n", width, s.Name, s.Seconds, state, s.Detail)
		if s.Error != "" {
			fmt.Fprintf(w, "%*s  %s\n", width, "", s.Error)
		}
	}
	switch {
	case r.Switched:
		fmt.Fprintf(w, "switched: writes were unavailable for %.3fs (fence → hook done); %d rows verified, %d sequences set\n",
			r.WriteUnavailableSeconds, r.RowsVerified, r.Sequences)
	case r.WriteUnavailableSeconds > 0:
		fmt.Fprintf(w, "not switched: writes were unavailable for %.3fs\n", r.WriteUnavailableSeconds)
	}
	if r.Alert != "" {
		fmt.Fprintf(w, "ALERT: %s\n", r.Alert)
	}
	if r.Error != "" && r.Alert == "" {
		fmt.Fprintf(w, "stopped: %s\n", r.Error)
	}
}
