package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cdcd-io/cdcd/pkg/cutover"
	"github.com/cdcd-io/cdcd/pkg/snapshot"
)

// Cutover is the `cutover:` section: `cdcd cutover` switches the
// application from the source (blue) to the postgres sinks (green).
type Cutover struct {
	// Hook is the switch command (sh -c): a load-balancer backend flip, a
	// DNS change, a PgBouncer reload. Required for a cutover (not for
	// --dry-run).
	Hook string `yaml:"hook"`
	// BackHook is the command that switches back to blue (cutover --back).
	BackHook string `yaml:"back_hook"`
	// HookTimeout bounds a hook. Default 60s.
	HookTimeout Duration `yaml:"hook_timeout"`
	// Verify is full, counts, after or off. Default counts.
	Verify string `yaml:"verify"`
	// MaxLag: the pre-check fails while a sink is further behind. Default 64MiB.
	MaxLag ByteSize `yaml:"max_lag"`
	// MaxTransactionAge: the pre-check fails while a source transaction is
	// older. Default 30s.
	MaxTransactionAge Duration `yaml:"max_transaction_age"`
	// FenceGrace lets transactions in progress finish before their
	// sessions are ended. Default 0: ended at once.
	FenceGrace Duration `yaml:"fence_grace"`
	// FenceCommand and UnfenceCommand replace the built-in fence (ALTER
	// DATABASE … SET default_transaction_read_only and ending sessions).
	FenceCommand   string `yaml:"fence_command"`
	UnfenceCommand string `yaml:"unfence_command"`
	// DrainTimeout bounds the wait for every sink to apply the marker.
	// Default 60s.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// SequenceGap is added to every sequence on the targets. Default 1000.
	SequenceGap int64 `yaml:"sequence_gap"`
	// Rollback creates a slot on green before the switch and replicates
	// green → blue afterwards (cdcd cutover keeps running it). Default false.
	Rollback bool `yaml:"rollback"`
	// RollbackSlot names the slot and publication on green. Default
	// cdcd_rollback.
	RollbackSlot string `yaml:"rollback_slot"`
	// RollbackTrailDir is the rollback pipeline's trail. Default
	// <trail.dir>-rollback.
	RollbackTrailDir string `yaml:"rollback_trail_dir"`
	// RollbackListen is the rollback pipeline's http endpoint. Default off.
	RollbackListen string `yaml:"rollback_listen"`
}

func (c Cutover) rollbackSlot() string {
	if c.RollbackSlot == "" {
		return "cdcd_rollback"
	}
	return c.RollbackSlot
}

// rollbackSink is the rollback pipeline's sink name (its checkpoint key on blue).
const rollbackSink = "rollback"

// CutoverConfig returns the cutover the file describes: blue → green, or
// with back green → blue over the rollback replication.
func (f *File) CutoverConfig(back bool) (cutover.Config, error) {
	c := f.Cutover
	vc, err := f.VerifyConfig()
	if err != nil {
		return cutover.Config{}, err
	}
	cfg := cutover.Config{
		Verify: c.Verify, VerifyConfig: vc, MaxLagBytes: int64(c.MaxLag),
		MaxTransactionAge: time.Duration(c.MaxTransactionAge), FenceGrace: time.Duration(c.FenceGrace), FenceCommand: c.FenceCommand, UnfenceCommand: c.UnfenceCommand,
		DrainTimeout: time.Duration(c.DrainTimeout), SequenceGap: c.SequenceGap, Hook: c.Hook, HookTimeout: time.Duration(c.HookTimeout),
	}
	switch c.Verify {
	case "", cutover.VerifyFull, cutover.VerifyCounts, cutover.VerifyAfter, cutover.VerifyOff:
	default:
		return cfg, f.errAt("cutover.verify", fmt.Errorf("%q is not one of full, counts, after, off", c.Verify))
	}
	var greens []cutover.Target
	for _, s := range f.Sinks {
		if s.Kind == "postgres" {
			greens = append(greens, cutover.Target{Name: s.Name, DSN: s.DSN, CheckpointTable: s.CheckpointTable})
		}
	}
	if len(greens) == 0 {
		return cfg, f.errAt("sinks", errors.New("cutover needs a postgres sink: the green database"))
	}
	blue := vc.SourceDSN
	if !back {
		cfg.SourceDSN, cfg.Targets = blue, greens
		if c.Rollback {
			cfg.RollbackSlot = c.rollbackSlot()
		}
		return cfg, nil
	}
	if len(greens) != 1 {
		return cfg, f.errAt("sinks", errors.New("cutover --back needs exactly one postgres sink: the green database to leave"))
	}
	if !c.Rollback {
		return cfg, f.errAt("cutover.rollback", errors.New("is off: --back needs the rollback replication green → blue (rollback: true)"))
	}
	cfg.SourceDSN = greens[0].DSN
	cfg.Targets = []cutover.Target{{Name: rollbackSink, DSN: Writable(blue)}}
	cfg.Hook, cfg.UnfenceTargets = c.BackHook, true
	cfg.VerifyConfig.Map, cfg.VerifyConfig.Publication = nil, c.rollbackSlot()
	return cfg, nil
}

// RollbackFile is the configuration of the rollback pipeline green → blue:
// the green sink's database as the source (the slot made by the cutover),
// blue's as the one sink, written to even though blue is fenced.
func (f *File) RollbackFile() (*File, error) {
	c := f.Cutover
	if len(f.Mappings) > 0 {
		return nil, f.errAt("mappings", errors.New("rollback replication needs tables unrenamed and unfiltered: remove mappings or cutover.rollback"))
	}
	var green *SinkSpec
	for i := range f.Sinks {
		if f.Sinks[i].Kind == "postgres" {
			if green != nil {
				return nil, f.errAt("sinks", errors.New("rollback replication needs exactly one postgres sink"))
			}
			green = &f.Sinks[i]
		}
	}
	if green == nil {
		return nil, f.errAt("sinks", errors.New("cutover needs a postgres sink: the green database"))
	}
	blue := f.Source.DSN
	if f.Source.PrimaryDSN != "" {
		blue = f.Source.PrimaryDSN
	}
	dir := c.RollbackTrailDir
	if dir == "" {
		dir = strings.TrimRight(f.Trail.Dir, "/") + "-rollback"
	}
	listen := c.RollbackListen
	if listen == "" {
		listen = "off"
	}
	r := &File{
		Source: Source{DSN: green.DSN, Slot: c.rollbackSlot(), Publication: c.rollbackSlot(),
			Heartbeat: f.Source.Heartbeat, StatusInterval: f.Source.StatusInterval},
		Trail:    Trail{Dir: dir},
		Capture:  f.Capture,
		Sinks:    []SinkSpec{{Name: rollbackSink, Kind: "postgres", DSN: Writable(blue), Batch: green.Batch}},
		Log:      f.Log,
		HTTP:     HTTP{Listen: listen},
		Snapshot: Snapshot{Mode: snapshot.ModeNever},
		Tables:   Tables{Exclude: []string{"cdcd.*"}},
	}
	return r, nil
}

// Writable adds default_transaction_read_only=off to a connection string,
// so its sessions write into a database fenced by cutover.
func Writable(conn string) string {
	const p = "default_transaction_read_only=off"
	if strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://") {
		if strings.Contains(conn, "?") {
			return conn + "&" + p
		}
		return conn + "?" + p
	}
	return conn + " " + p
}
