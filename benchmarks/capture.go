package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// benchCapture: cdcd capture (pgoutput → typed events → fsynced trail) vs
// pg_recvlogical streaming the same slot workload to /dev/null — the limit
// of what the walsender can deliver. Each run reads a fresh slot created
// before the workload, so both decode exactly the same WAL; both stop at
// the same end position (cdcd capture --until, pg_recvlogical --endpos).
func benchCapture(ctx context.Context, e *Env, res *Results) error {
	var srv servers
	defer srv.stop()
	conf := map[string]string{"max_replication_slots": "40", "max_wal_senders": "40"}
	for k, v := range benchConf {
		conf[k] = v
	}
	pg, err := srv.start(ctx, "capture", conf)
	if err != nil {
		return err
	}
	reps := e.Size.Reps
	if err := execSQL(ctx, pg, captureDDL...); err != nil {
		return err
	}
	for i := range reps {
		if err := execSQL(ctx, pg,
			fmt.Sprintf(`SELECT pg_create_logical_replication_slot('cap_%d', 'pgoutput')`, i),
			fmt.Sprintf(`SELECT pg_create_logical_replication_slot('rcv_%d', 'pgoutput')`, i)); err != nil {
			return err
		}
	}
	log.Printf("capture: %d rows in %d-row transactions", e.Size.CaptureRows, e.Size.CaptureTx)
	if err := execSQL(ctx, pg, fmt.Sprintf(`CALL fill(%d, %d)`, e.Size.CaptureRows, e.Size.CaptureTx)); err != nil {
		return err
	}
	end, err := markerLSN(pg)
	if err != nil {
		return err
	}
	recv, err := pgBin("pg_recvlogical")
	if err != nil {
		return err
	}
	var cdcdRuns, refRuns []float64
	for i := range reps {
		// Alternate which goes first: the second reads a warmer cache.
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		for _, cdcdTurn := range order {
			if cdcdTurn {
				d, err := timeCdcdCapture(ctx, e, pg, fmt.Sprintf("cap_%d", i), end.String())
				if err != nil {
					return err
				}
				cdcdRuns = append(cdcdRuns, secs(d))
			} else {
				t0 := time.Now()
				cmd := exec.CommandContext(ctx, recv, "-d", pg.DSN("postgres"), "--slot", fmt.Sprintf("rcv_%d", i),
					"--start", "--endpos", end.String(), "-o", "proto_version=1", "-o", "publication_names=cdcd", "-f", "/dev/null")
				if out, err := cmd.CombinedOutput(); err != nil {
					return fmt.Errorf("pg_recvlogical: %v\n%s", err, out)
				}
				refRuns = append(refRuns, secs(time.Since(t0)))
			}
		}
		log.Printf("capture rep %d: cdcd %.2fs, pg_recvlogical %.2fs", i+1, cdcdRuns[i], refRuns[i])
	}
	res.addRatio("capture.rows", fmt.Sprintf("capture %s rows (%d-row tx)", human(e.Size.CaptureRows), e.Size.CaptureTx),
		"rows/s", float64(e.Size.CaptureRows), "pg_recvlogical", 0.95, cdcdRuns, refRuns)
	return nil
}

var captureDDL = []string{
	`CREATE TABLE bench (id int PRIMARY KEY, a int, b text, c timestamptz, d numeric)`,
	`CREATE PUBLICATION cdcd FOR ALL TABLES`,
	`CREATE PROCEDURE fill(n int, per int) LANGUAGE plpgsql AS $$
	 DECLARE i int := 0;
	 BEGIN
	   WHILE i < n LOOP
	     INSERT INTO bench SELECT g, g % 1000, 'row ' || g, now(), g * 1.25 FROM generate_series(i + 1, least(i + per, n)) g;
	     COMMIT;
	     i := i + per;
	   END LOOP;
	 END $$`,
}

func timeCdcdCapture(ctx context.Context, e *Env, pg *pgtest.Cluster, slot, until string) (time.Duration, error) {
	dir := filepath.Join(e.Work, slot)
	y := fmt.Sprintf("source:\n  dsn: %q\n  slot: %s\n  publication: cdcd\n  heartbeat: \"off\"\ntrail:\n  dir: %q\nlog:\n  format: json\n",
		pg.DSN("postgres"), slot, dir)
	path := dir + ".yaml"
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		return 0, err
	}
	t0 := time.Now()
	p, err := startCdcd(e, slot, "capture", "--config", path, "--until", until)
	if err != nil {
		return 0, err
	}
	if err := p.Wait(ctx, 30*time.Minute); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	return d, os.RemoveAll(dir)
}
