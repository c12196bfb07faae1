package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/cdcd-io/cdcd/pkg/change"
	"github.com/cdcd-io/cdcd/pkg/status"
)

// holdState is the daemon's answer (service.HoldState).
type holdState struct {
	Sink     string `json:"sink"`
	LSN      string `json:"lsn"`
	Reached  bool   `json:"reached"`
	Position string `json:"position"`
}

// daemon talks to a running cdcd's hold endpoint.
type daemon struct {
	base string // http://host:port
	c    *http.Client
}

func (d daemon) call(ctx context.Context, method, sinkName, query string) (holdState, error) {
	var st holdState
	u := d.base + "/sinks/" + url.PathEscape(sinkName) + "/hold"
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return st, err
	}
	resp, err := d.c.Do(req)
	if err != nil {
		return st, fmt.Errorf("ask the running cdcd (%s) to hold sink %s: %w", d.base, sinkName, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("the running cdcd (%s) refused to hold sink %s: %s %s", d.base, sinkName, resp.Status, body)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("hold of sink %s: bad answer from %s: %w", sinkName, d.base, err)
	}
	return st, nil
}

func (d daemon) hold(ctx context.Context, sinkName string, lsn change.LSN, ttl time.Duration) error {
	_, err := d.call(ctx, http.MethodPost, sinkName, url.Values{"lsn": {lsn.String()}, "ttl": {ttl.String()}}.Encode())
	return err
}

func (d daemon) release(ctx context.Context, sinkName string) error {
	_, err := d.call(ctx, http.MethodDelete, sinkName, "")
	return err
}

// waitReached polls until the sink's hold at lsn is reached.
func (d daemon) waitReached(ctx context.Context, sinkName string, lsn change.LSN) (change.LSN, error) {
	for {
		st, err := d.call(ctx, http.MethodGet, sinkName, "")
		if err != nil {
			return 0, err
		}
		if st.LSN != lsn.String() {
			return 0, fmt.Errorf("sink %s lost its hold at %s (timed out, or another holder moved it)", sinkName, lsn)
		}
		if st.Reached {
			return change.ParseLSN(st.Position)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("sink %s did not reach %s: %w (is it stopped or far behind? see cdcd status)", sinkName, lsn, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ready checks, from the daemon's /status, that every named sink runs and
// streams: a stopped sink, or one still copying its initial snapshot,
// would never reach a hold.
func (d daemon) ready(ctx context.Context, names []string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+"/status", nil)
	if err != nil {
		return err
	}
	resp, err := d.c.Do(req)
	if err != nil {
		return fmt.Errorf("ask the running cdcd (%s) for its status: %w", d.base, err)
	}
	defer resp.Body.Close()
	var r status.Report
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("status of the running cdcd (%s): %w", d.base, err)
	}
	for _, name := range names {
		i := slices.IndexFunc(r.Sinks, func(s status.Sink) bool { return s.Name == name })
		switch {
		case i < 0:
			return fmt.Errorf("the running cdcd (%s) has no sink %s: does it run this configuration?", d.base, name)
		case r.Sinks[i].Stopped:
			return fmt.Errorf("sink %s has stopped (%s): fix it and restart cdcd before verifying", name, r.Sinks[i].LastError)
		case r.Sinks[i].Snapshot != nil && !r.Sinks[i].Snapshot.Complete:
			return fmt.Errorf("sink %s is still copying its initial snapshot: verify once it streams (cdcd status)", name)
		}
	}
	return nil
}

// Probe reports whether a cdcd daemon answers at base (http://host:port).
func Probe(ctx context.Context, base string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}
