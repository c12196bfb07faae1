package pgtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var slotSeq atomic.Int64

// StartStandby makes a physical streaming standby of the running primary c and
// waits until it is in recovery and has replayed all WAL the primary had written.
// The caller must Stop it; stopping it leaves its slot on the primary.
//
// The standby streams from a physical replication slot created on c before the
// backup, so the primary keeps the WAL it needs. It is a hot standby with
// hot_standby_feedback=on and, like the primary, wal_level=logical, which logical
// decoding on a standby (PostgreSQL 16 and later) requires. opts.Version must be 0
// or c's version; opts.Conf is applied over the primary's settings.
//
// The base backup is taken without pg_basebackup, which the PostgreSQL 17 package
// lacks: pg_backup_start, a file copy of the live data directory leaving out what
// pg_basebackup leaves out (including pg_wal, which the standby streams instead),
// and pg_backup_stop, whose backup_label goes into the copy.
func (c *Cluster) StartStandby(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Version == 0 {
		opts.Version = c.Version
	}
	if opts.Version != c.Version {
		return nil, fmt.Errorf("pgtest: a standby of a PostgreSQL %d primary cannot run version %d", c.Version, opts.Version)
	}
	if opts.Name == "" {
		opts.Name = "standby"
	}
	s, err := newCluster(opts)
	if err != nil {
		return nil, err
	}
	s.slot = fmt.Sprintf("pgtest_%s_%d", strings.ToLower(unsafeName.ReplaceAllString(opts.Name, "_")), slotSeq.Add(1))
	s.slot = strings.NewReplacer(".", "_", "-", "_").Replace(s.slot)
	if len(s.slot) > 63 {
		s.slot = fmt.Sprintf("pgtest_standby_%d", slotSeq.Add(1))
	}
	if err := c.baseBackup(ctx, s.DataDir, s.slot); err != nil {
		return nil, s.fail(err)
	}
	s.password = c.password // the data directory, roles included, is a copy
	s.conf = maps.Clone(c.conf)
	s.conf["primary_conninfo"] = fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=%s", c.Port, s.slot)
	s.conf["primary_slot_name"] = s.slot
	s.conf["hot_standby"] = "on"
	s.conf["hot_standby_feedback"] = "on"
	maps.Copy(s.conf, opts.Conf)
	if err := writeServerFile(filepath.Join(s.DataDir, "standby.signal"), ""); err != nil {
		return nil, s.fail(err)
	}
	if err := s.startFresh(ctx); err != nil {
		return nil, s.fail(err)
	}
	if err := s.waitInRecovery(ctx); err != nil {
		return nil, s.fail(err)
	}
	if err := c.WaitReplay(ctx, s); err != nil {
		return nil, s.fail(err)
	}
	return s, nil
}

// StartStandbyT is [Cluster.StartStandby] for tests: it fails t with the server log
// on error and stops the standby when the test ends (before the primary, which was
// started earlier).
func (c *Cluster) StartStandbyT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	s, err := c.StartStandby(ctx, opts)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return s
}

// baseBackup creates slot on c and copies c's data directory to dst as a
// non-exclusive online backup.
func (c *Cluster) baseBackup(ctx context.Context, dst, slot string) error {
	conn, err := c.connect(ctx, "postgres")
	if err != nil {
		return err
	}
	// Closing the session also aborts a backup still in progress.
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, true)", slot); err != nil {
		return fmt.Errorf("creating physical slot %s on the primary: %w", slot, err)
	}
	// fast=true: an immediate checkpoint rather than a spread one.
	if _, err := conn.Exec(ctx, "SELECT pg_backup_start('cdcd-pgtest', true)"); err != nil {
		return fmt.Errorf("pg_backup_start: %w", err)
	}
	if err := copyDataDir(c.DataDir, dst); err != nil {
		return fmt.Errorf("copying the primary's data directory: %w", err)
	}
	var label, spcmap string
	// wait_for_archive=false: archiving is off; the standby streams the WAL.
	err = conn.QueryRow(ctx, "SELECT labelfile, coalesce(spcmapfile, '') FROM pg_backup_stop(false)").Scan(&label, &spcmap)
	if err != nil {
		return fmt.Errorf("pg_backup_stop: %w", err)
	}
	if err := writeServerFile(filepath.Join(dst, "backup_label"), label); err != nil {
		return err
	}
	if spcmap != "" {
		if err := writeServerFile(filepath.Join(dst, "tablespace_map"), spcmap); err != nil {
			return err
		}
	}
	return chownR(dst)
}

// Left out of a base backup, as pg_basebackup does (see "Backing Up the Data
// Directory" in the PostgreSQL docs and basebackup.c).
var (
	skipFiles = map[string]bool{
		"postmaster.pid": true, "postmaster.opts": true, "backup_label": true,
		"tablespace_map": true, "backup_manifest": true, "current_logfiles": true,
		"pg_internal.init": true, "standby.signal": true, "recovery.signal": true,
	}
	// Directories whose contents are left out; the directories themselves are kept.
	// Of pg_wal, subdirectories (archive_status, summaries) are kept empty too.
	emptyDirs = map[string]bool{
		"pg_wal": true, "pg_replslot": true, "pg_dynshmem": true, "pg_notify": true,
		"pg_serial": true, "pg_snapshots": true, "pg_stat_tmp": true, "pg_subtrans": true,
	}
)

// copyDataDir copies a running server's data directory. Files may change, appear
// and vanish during the copy; WAL replay from the backup's checkpoint makes the
// result consistent.
func copyDataDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		parts := strings.Split(rel, string(filepath.Separator))
		if skipFiles[d.Name()] || strings.HasPrefix(d.Name(), "pgsql_tmp") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if len(parts) > 1 && emptyDirs[parts[0]] && !(parts[0] == "pg_wal" && d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o700)
		case d.Type()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s: tablespaces are not supported", path)
		case d.Type().IsRegular():
			return copyFile(path, target)
		}
		return nil
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // removed since the directory was read
	}
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// waitInRecovery waits until the standby answers that it is in recovery.
func (s *Cluster) waitInRecovery(ctx context.Context) error {
	return poll(ctx, s, func(q querier) (bool, error) {
		var in bool
		err := q.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&in)
		if err == nil && !in {
			err = errors.New("the standby is not in recovery")
		}
		return in, err
	})
}

// WaitReplay waits until standby has replayed all WAL that c, its primary, had
// flushed when WaitReplay was called (pg_last_wal_replay_lsn() on the standby
// reaching pg_current_wal_flush_lsn() on c), so that everything committed on c
// before the call is visible on standby.
//
// Commits made with synchronous_commit=off are not flushed at once. When c was
// started with synchronous_commit=off in [Options.Conf], WaitReplay first runs a
// CHECKPOINT on c, which flushes all WAL and writes no transaction that logical
// decoding would see; sessions that turn it off themselves must wait on their own.
func (c *Cluster) WaitReplay(ctx context.Context, standby *Cluster) error {
	conn, err := c.connect(ctx, "postgres")
	if err != nil {
		return err
	}
	if v := strings.ToLower(strings.Trim(c.conf["synchronous_commit"], "'")); v == "off" || v == "false" || v == "0" || v == "no" {
		_, err = conn.Exec(ctx, "CHECKPOINT")
	}
	var target string
	if err == nil {
		err = conn.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&target)
	}
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("pgtest: reading the WAL position of %s: %w", c.Name, err)
	}
	var replayed string
	err = poll(ctx, standby, func(q querier) (bool, error) {
		var done bool
		err := q.QueryRow(ctx, "SELECT coalesce(pg_last_wal_replay_lsn()::text, ''), coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)", target).
			Scan(&replayed, &done)
		return done, err
	})
	if err != nil {
		return fmt.Errorf("pgtest: waiting for %s to replay up to %s (replayed %s): %w", standby.Name, target, replayed, err)
	}
	return nil
}

// LogStandbySnapshot writes a running-transactions record on c, a primary
// (pg_log_standby_snapshot, PostgreSQL 16 and later). Creating a logical slot on a
// standby waits for such a record, which an idle primary writes only every 15 s;
// see [Cluster.LogStandbySnapshots].
func (c *Cluster) LogStandbySnapshot(ctx context.Context) error {
	return c.Exec(ctx, "postgres", "SELECT pg_log_standby_snapshot()")
}

// LogStandbySnapshots calls [Cluster.LogStandbySnapshot] on c every interval in a
// goroutine, until the returned stop function is called; stop waits for the
// goroutine and returns the first error other than cancellation. Wrap the creation
// of a logical slot on a standby of c with it.
func (c *Cluster) LogStandbySnapshots(ctx context.Context, interval time.Duration) (stop func() error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var firstErr error
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if err := c.LogStandbySnapshot(ctx); err != nil && ctx.Err() == nil && firstErr == nil {
				firstErr = err
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return func() error {
		cancel()
		wg.Wait()
		return firstErr
	}
}
