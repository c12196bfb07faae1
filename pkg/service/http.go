package service

import (
	"errors"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves /metrics (Prometheus text format), /healthz (200 while the
// daemon is live), /readyz (200 while it is caught up within the configured
// lag) and /status (the status report as JSON, which `cdcd status` reads).
// /metrics, /readyz and /status read the slot first (concurrent requests
// share one read), so they show the source as of the request. The
// /sinks/{name}/hold endpoints (hold.go) hold a sink at a source position.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	metrics := promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorLog: errLog{s}})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		s.mon.refresh(r.Context())
		metrics.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := s.Healthy()
		answer(w, ok, why)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		s.mon.refresh(r.Context())
		rep := s.Report()
		answer(w, rep.Ready, rep.NotReady)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		s.mon.refresh(r.Context())
		w.Header().Set("Content-Type", "application/json")
		_ = s.Report().WriteJSON(w)
	})
	s.holdHandlers(mux)
	return mux
}

func answer(w http.ResponseWriter, ok bool, why string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ok: " + why + "\n"))
		return
	}
	if why == "" {
		why = "ok"
	}
	_, _ = w.Write([]byte("ok: " + why + "\n"))
}

// errLog sends promhttp's errors to the service's logger.
type errLog struct{ s *Service }

func (e errLog) Println(v ...any) {
	var b strings.Builder
	for _, x := range v {
		if err, ok := x.(error); ok {
			b.WriteString(err.Error())
		} else if str, ok := x.(string); ok {
			b.WriteString(str)
		}
	}
	e.s.log.Warn("metrics", "err", errors.New(b.String()))
}
