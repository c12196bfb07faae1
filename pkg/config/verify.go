package config

import (
	"strings"

	"github.com/cdcd-io/cdcd/pkg/verify"
)

// VerifyConfig returns what `cdcd verify` compares: the source, every
// postgres sink and the table mapping. The daemon's endpoint and the
// command's flags are the caller's to set.
func (f *File) VerifyConfig() (verify.Config, error) {
	m, err := f.Map()
	if err != nil {
		return verify.Config{}, f.errAt("mappings", err)
	}
	cfg := verify.Config{
		SourceDSN:   f.Source.DSN,
		Publication: f.Source.Publication,
		Slot:        f.Source.Slot,
		Map:         m,
	}
	if f.Source.PrimaryDSN != "" {
		// Holds and the marker need the primary: the snapshot is taken
		// where the WAL is written.
		cfg.SourceDSN = f.Source.PrimaryDSN
	}
	for _, s := range f.Sinks {
		if s.Kind == "postgres" {
			cfg.Targets = append(cfg.Targets, verify.Target{Name: s.Name, DSN: s.DSN})
		}
	}
	return cfg, nil
}

// DaemonURL is the running daemon's base URL (http://host:port), "" when
// its endpoint is off.
func (f *File) DaemonURL() string {
	return strings.TrimSuffix(f.StatusURL(), "/status")
}
