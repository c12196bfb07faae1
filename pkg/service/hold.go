package service

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/cdcd-io/cdcd/pkg/apply"
	"github.com/cdcd-io/cdcd/pkg/change"
)

// MaxHoldTTL bounds a hold's time-out: a hold stops a sink, so it never
// outlives its holder by much.
const MaxHoldTTL = time.Hour

// HoldState is the JSON answer of the /sinks/{name}/hold endpoint.
type HoldState struct {
	// Sink is the sink's name.
	Sink string `json:"sink"`
	// LSN is the hold's boundary ("" when the sink has no hold).
	LSN string `json:"lsn,omitempty"`
	// Reached reports that the sink stands at the boundary with everything
	// before it committed on the target.
	Reached bool `json:"reached"`
	// Position is the end LSN of the last transaction applied before the
	// boundary, once reached.
	Position string `json:"position,omitempty"`
}

// holdHandlers serves the sinks' holds (see apply.Hold), which cdcd verify
// and cdcd cutover use to read a target at an exact source position while
// replication runs:
//
//	POST   /sinks/{name}/hold?lsn=0/16B3748&ttl=10m  set (or move) the hold
//	GET    /sinks/{name}/hold                        its state
//	DELETE /sinks/{name}/hold                        release it
//
// ttl (default 5m, at most MaxHoldTTL) releases a hold whose holder died.
func (s *Service) holdHandlers(mux *http.ServeMux) {
	worker := func(w http.ResponseWriter, r *http.Request) *apply.Worker {
		name := r.PathValue("name")
		for _, wk := range s.p.Workers() {
			if wk.Name() == name {
				return wk
			}
		}
		http.Error(w, fmt.Sprintf("no sink named %q", name), http.StatusNotFound)
		return nil
	}
	reply := func(w http.ResponseWriter, wk *apply.Worker, h *apply.Hold) {
		st := HoldState{Sink: wk.Name()}
		if h != nil {
			st.LSN = h.LSN.String()
			select {
			case <-h.Reached():
				st.Reached = true
				st.Position = h.Position().EndLSN.String()
			default:
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	}
	mux.HandleFunc("POST /sinks/{name}/hold", func(w http.ResponseWriter, r *http.Request) {
		wk := worker(w, r)
		if wk == nil {
			return
		}
		lsn, err := change.ParseLSN(r.URL.Query().Get("lsn"))
		if err != nil {
			http.Error(w, "lsn: "+err.Error(), http.StatusBadRequest)
			return
		}
		ttl := 5 * time.Minute
		if v := r.URL.Query().Get("ttl"); v != "" {
			if ttl, err = time.ParseDuration(v); err != nil || ttl <= 0 || ttl > MaxHoldTTL {
				http.Error(w, fmt.Sprintf("ttl %q: want a duration up to %s", v, MaxHoldTTL), http.StatusBadRequest)
				return
			}
		}
		reply(w, wk, wk.Hold(lsn, ttl))
	})
	mux.HandleFunc("GET /sinks/{name}/hold", func(w http.ResponseWriter, r *http.Request) {
		if wk := worker(w, r); wk != nil {
			reply(w, wk, wk.CurrentHold())
		}
	})
	mux.HandleFunc("DELETE /sinks/{name}/hold", func(w http.ResponseWriter, r *http.Request) {
		wk := worker(w, r)
		if wk == nil {
			return
		}
		if h := wk.CurrentHold(); h != nil {
			wk.ReleaseHold(h)
		}
		reply(w, wk, nil)
	})
}
