package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcd-io/cdcd/internal/pgtest"
	"github.com/cdcd-io/cdcd/pkg/change"
)

// benchTriggerCost: what the trigger source costs the application. pgbench's
// TPC-B-like mix (2 clients, 2 threads, a fixed duration) on two identical
// databases of one server: "triggers", where `cdcd trigger install` put the
// change log and the capture triggers on the four pgbench tables
// (allow_keyless for pgbench_history), and "plain", without. The two run one
// after the other, alternating which goes first, -reps times; the ratio is
// tps with triggers / tps without (1 = free; the goal is ≥ 0.7). cdcd itself
// does not run: this is the price of the triggers' writes inside the
// application's transactions, not of cdcd's polling (trigger.capture measures
// the reading). Each run starts from the same state: pgbench vacuums its
// tables and empties pgbench_history first, the change log is emptied (as a
// running cdcd keeps it small) and a CHECKPOINT puts both databases at the
// same full-page-write point.
func benchTriggerCost(ctx context.Context, e *Env, res *Results) error {
	var srv servers
	defer srv.stop()
	pg, err := srv.start(ctx, "trigger-cost", benchConf)
	if err != nil {
		return err
	}
	pgbench, err := pgBin("pgbench")
	if err != nil {
		return err
	}
	scale, dur := e.Size.TriggerPgbenchScale, e.Size.TriggerPgbenchTime
	for _, db := range []string{"plain", "triggers"} {
		if err := execSQL(ctx, pg, "CREATE DATABASE "+db); err != nil {
			return err
		}
		out, err := exec.CommandContext(ctx, pgbench, "-i", "-q", "-s", fmt.Sprint(scale), "-d", pg.DSN(db)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pgbench -i: %v\n%s", err, out)
		}
	}
	cfg, err := triggerConfig(e, "trigger-cost", pg.DSN("triggers"), "  allow_keyless: true\n")
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, e.Bin, "trigger", "install", "--config", cfg).CombinedOutput(); err != nil {
		return fmt.Errorf("cdcd trigger install: %v\n%s", err, out)
	}
	tpsRe := regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	// The runs are recorded as seconds per 1000 transactions (1000 / tps),
	// so the medians and the ratio come out as tps.
	const per = 1000
	var with, without []float64
	for i := range e.Size.Reps {
		order := []string{"triggers", "plain"}
		if i%2 == 1 {
			order = []string{"plain", "triggers"}
		}
		var got [2]float64
		for _, db := range order {
			if db == "triggers" {
				if err := pg.Exec(ctx, db, `TRUNCATE cdcd.change_log`); err != nil {
					return err
				}
			}
			if err := pg.Exec(ctx, db, `CHECKPOINT`); err != nil {
				return err
			}
			out, err := exec.CommandContext(ctx, pgbench, "-c", "2", "-j", "2", "-T", fmt.Sprint(int(dur.Seconds())), "-d", pg.DSN(db)).CombinedOutput()
			if err != nil {
				return fmt.Errorf("pgbench on %s: %v\n%s", db, err, out)
			}
			m := tpsRe.FindSubmatch(out)
			if m == nil {
				return fmt.Errorf("pgbench on %s: no tps in its output:\n%s", db, out)
			}
			tps, err := strconv.ParseFloat(string(m[1]), 64)
			if err != nil || tps <= 0 {
				return fmt.Errorf("pgbench on %s: tps %q", db, m[1])
			}
			if db == "triggers" {
				with, got[0] = append(with, per/tps), tps
			} else {
				without, got[1] = append(without, per/tps), tps
			}
		}
		log.Printf("trigger cost rep %d: %.0f tps with triggers, %.0f tps without (%.2f)", i+1, got[0], got[1], got[0]/got[1])
	}
	var logged int64
	if err := queryRowDB(ctx, pg, "triggers", `SELECT count(*) FROM cdcd.change_log`, &logged); err != nil {
		return err
	}
	if logged == 0 {
		return fmt.Errorf("trigger cost: the change log is empty after pgbench: the triggers did not capture")
	}
	res.addRatio("trigger.cost", fmt.Sprintf("pgbench TPC-B tps with cdcd's triggers (2 clients, scale %d, %v)", scale, dur),
		"tx/s", per, "the same without triggers", 0.7, with, without)
	res.Ratios[len(res.Ratios)-1].Note = "runs are seconds per 1000 transactions (1000 / tps); cdcd column: tps with the triggers, reference: without"
	return nil
}

// benchTriggerCapture: the trigger source's capture rate against the
// pgoutput source's, end to end into the trail (`cdcd capture`, fsynced),
// on the same workload. Two identical servers; in each repetition both get
// the same CaptureRows rows in CaptureTx-row transactions, written BEFORE
// cdcd starts — on the pgoutput server after a fresh slot was created, on
// the trigger server after `cdcd trigger install` (the change log emptied
// first) — so both start with the same backlog on the source and the time is
// what each source kind needs to make all of it durable in the trail,
// nothing of the writing. A new trail starts from everything the change log
// holds, so the trigger source reads the whole backlog. Each run ends with
// `cdcd capture --until`: for pgoutput a logical message committed after
// the workload, as in the capture scenario; for the trigger source the
// position of the last transaction, which it numbers 2, 4, 6, ... (the
// EndLSN of the n-th transaction of a new trail is 2n), so --until 2×(the
// transactions in the change log). A run is timed from the start of the
// process to its exit, as in the capture scenario: for the trigger source
// that includes the acknowledgement at the clean stop, which deletes the
// captured rows from the change log (10,000-row DELETEs; about a quarter of
// the time at ci size) — work the source must do before its next poll in
// steady state anyway. Both servers are filled before either is timed, then
// timed one after the other, alternating which goes first.
// Ratio: trigger rate / pgoutput rate (goal ≥ 0.5).
func benchTriggerCapture(ctx context.Context, e *Env, res *Results) error {
	var srv servers
	defer srv.stop()
	conf := map[string]string{"max_replication_slots": "40", "max_wal_senders": "40"}
	for k, v := range benchConf {
		conf[k] = v
	}
	pgo, err := srv.start(ctx, "trigcap-pgoutput", conf)
	if err != nil {
		return err
	}
	trg, err := srv.start(ctx, "trigcap-trigger", conf)
	if err != nil {
		return err
	}
	ddl := []string{
		`CREATE TABLE bench (id int PRIMARY KEY, a int, b text, c timestamptz, d numeric)`,
		`CREATE PROCEDURE fill_from(first int, n int, per int) LANGUAGE plpgsql AS $$
		 DECLARE i int := 0;
		 BEGIN
		   WHILE i < n LOOP
		     INSERT INTO bench SELECT g, g % 1000, 'row ' || g, now(), g * 1.25 FROM generate_series(first + i, first + least(i + per, n) - 1) g;
		     COMMIT;
		     i := i + per;
		   END LOOP;
		 END $$`,
	}
	if err := execSQL(ctx, pgo, append(ddl, `CREATE PUBLICATION cdcd FOR ALL TABLES`)...); err != nil {
		return err
	}
	if err := execSQL(ctx, trg, ddl...); err != nil {
		return err
	}
	trgCfg, err := triggerConfig(e, "trigcap-trigger", trg.DSN("postgres"), "")
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, e.Bin, "trigger", "install", "--config", trgCfg).CombinedOutput(); err != nil {
		return fmt.Errorf("cdcd trigger install: %v\n%s", err, out)
	}
	rows, per := e.Size.CaptureRows, e.Size.CaptureTx
	txs := (rows + per - 1) / per
	log.Printf("trigger capture: %d rows in %d-row transactions per repetition", rows, per)
	var trigRuns, pgoRuns []float64
	var trigPeak, pgoPeak uint64
	for i := range e.Size.Reps {
		slot := fmt.Sprintf("cap_%d", i)
		if err := execSQL(ctx, pgo, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, slot)); err != nil {
			return err
		}
		if err := execSQL(ctx, trg, `TRUNCATE cdcd.change_log`); err != nil {
			return err
		}
		fill := fmt.Sprintf(`CALL fill_from(%d, %d, %d)`, i*rows+1, rows, per)
		if err := execSQL(ctx, pgo, fill); err != nil {
			return err
		}
		end, err := markerLSN(pgo)
		if err != nil {
			return err
		}
		if err := execSQL(ctx, trg, fill); err != nil {
			return err
		}
		var logged int
		if err := trg.QueryRow(`SELECT count(DISTINCT txid) FROM cdcd.change_log`, &logged); err != nil {
			return err
		}
		if logged != txs {
			return fmt.Errorf("trigger capture: the change log holds %d transactions, want %d", logged, txs)
		}
		for _, c := range []*pgtest.Cluster{pgo, trg} {
			if err := execSQL(ctx, c, `CHECKPOINT`); err != nil {
				return err
			}
		}
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		for _, trigTurn := range order {
			var name, cfg, until string
			if trigTurn {
				name = fmt.Sprintf("trigcap-trigger-%d", i)
				if cfg, err = triggerConfig(e, name, trg.DSN("postgres"), ""); err != nil {
					return err
				}
				until = change.LSN(2 * txs).String()
			} else {
				name = fmt.Sprintf("trigcap-pgoutput-%d", i)
				y := fmt.Sprintf("source:\n  dsn: %q\n  slot: %s\n  publication: cdcd\n  heartbeat: \"off\"\ntrail:\n  dir: %q\nlog:\n  format: json\n",
					pgo.DSN("postgres"), slot, filepath.Join(e.Work, name))
				cfg = filepath.Join(e.Work, name+".yaml")
				if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
					return err
				}
				until = end.String()
			}
			d, peak, err := timeCapture(ctx, e, name, cfg, until, rows)
			if err != nil {
				return err
			}
			if trigTurn {
				trigRuns = append(trigRuns, secs(d))
				trigPeak = max(trigPeak, peak)
			} else {
				pgoRuns = append(pgoRuns, secs(d))
				pgoPeak = max(pgoPeak, peak)
			}
		}
		log.Printf("trigger capture rep %d: trigger source %.2fs, pgoutput %.2fs", i+1, trigRuns[i], pgoRuns[i])
	}
	res.addRatio("trigger.capture", fmt.Sprintf("trigger source: capture %s rows (%d-row tx)", human(rows), per),
		"rows/s", float64(rows), "pgoutput source (cdcd capture)", 0.5, trigRuns, pgoRuns)
	res.Ratios[len(res.Ratios)-1].Note = "cdcd column: source.kind trigger; reference: source.kind postgres (pgoutput); both cdcd capture into an fsynced trail"
	res.Notes = append(res.Notes, fmt.Sprintf("trigger.capture: cdcd peak RSS (sampled) %.0f MiB with the trigger source, %.0f MiB with pgoutput, for a backlog of %s rows",
		float64(trigPeak)/(1<<20), float64(pgoPeak)/(1<<20), human(rows)))
	return nil
}

// queryRowDB scans one row of sql on database db.
func queryRowDB(ctx context.Context, c *pgtest.Cluster, db, sql string, dst ...any) error {
	conn, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, sql).Scan(dst...)
}

// triggerConfig writes a kind-trigger configuration (its trail directory
// new) and returns its path; extra is more source: keys.
func triggerConfig(e *Env, name, dsn, extra string) (string, error) {
	dir := filepath.Join(e.Work, name)
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	y := fmt.Sprintf("source:\n  kind: trigger\n  dsn: %q\n%strail:\n  dir: %q\nlog:\n  format: json\n", dsn, extra, dir)
	path := dir + ".yaml"
	return path, os.WriteFile(path, []byte(y), 0o600)
}

// timeCapture runs `cdcd capture --until` from a new trail until it exits,
// checks from its closing log line that it captured at least the workload's
// changes, and returns the time and the peak RSS it saw (sampled).
func timeCapture(ctx context.Context, e *Env, name, cfg, until string, changes int) (time.Duration, uint64, error) {
	t0 := time.Now()
	p, err := startCdcd(e, name, "capture", "--config", cfg, "--until", until)
	if err != nil {
		return 0, 0, err
	}
	// VmHWM is gone with the process: sample it while it runs.
	stop := make(chan struct{})
	sampled := make(chan uint64)
	go func() {
		var peak uint64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, p.PeakRSS())
			select {
			case <-stop:
				sampled <- peak
				return
			case <-t.C:
			}
		}
	}()
	err = p.Wait(ctx, 30*time.Minute)
	d := time.Since(t0)
	close(stop)
	peak := <-sampled
	if err != nil {
		return 0, 0, err
	}
	got, err := capturedChanges(p.log)
	if err != nil {
		return 0, 0, err
	}
	if got < changes {
		return 0, 0, fmt.Errorf("%s: captured %d changes, the workload has %d; log tail:\n%s", name, got, changes, tail(p.log, 20))
	}
	return d, peak, os.RemoveAll(filepath.Join(e.Work, name))
}

// capturedChanges reads the change count of cdcd capture's "capture
// stopped" log line (JSON log).
func capturedChanges(logPath string) (int, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Msg     string `json:"msg"`
			Changes *int   `json:"changes"`
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "capture stopped" && l.Changes != nil {
			return *l.Changes, nil
		}
	}
	return 0, fmt.Errorf("%s: no \"capture stopped\" line with a change count; tail:\n%s", logPath, tail(logPath, 20))
}
