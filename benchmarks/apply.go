package main

import (
	"context"
	"fmt"
	"log"
	"maps"
	"os"
	"os/exec"
	"time"

	"github.com/cdcd-io/cdcd/internal/pgtest"
)

// pair is a source and a target replicated by one system.
type pair struct {
	name     string
	src, dst *pgtest.Cluster
	d        drainer
	// cdcd only: its config and running process.
	config string
	proc   *Proc
	peak   uint64 // highest VmHWM seen across restarts
}

func (p *pair) alive() error {
	if p.proc == nil {
		return nil
	}
	return p.proc.alive()
}

func (p *pair) drain(ctx context.Context) error {
	return p.d.wait(ctx, p.src, p.dst, 60*time.Minute, p.alive)
}

func (p *pair) startCdcd(e *Env) error {
	proc, err := startCdcd(e, p.name, "run", "--config", p.config)
	if err != nil {
		return err
	}
	p.proc = proc
	deadline := time.Now().Add(time.Minute)
	for {
		var active bool
		err := p.src.QueryRow(`SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = 'cdcd'`, &active)
		if err == nil && active {
			return nil
		}
		if err := proc.alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cdcd not streaming after a minute: %v; log:\n%s", err, tail(proc.log, 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *pair) stopCdcd() error {
	if p.proc == nil {
		return nil
	}
	p.peak = max(p.peak, p.proc.PeakRSS())
	err := p.proc.Stop()
	p.proc = nil
	return err
}

const applyDDL = `CREATE TABLE bench (id int PRIMARY KEY, a int, b text, c timestamptz, d numeric);
	CREATE TABLE single (id int PRIMARY KEY, v text);
	CREATE TABLE marker (id int PRIMARY KEY)`

const fillSingle = `CREATE PROCEDURE fill_single(n int) LANGUAGE plpgsql AS $$
	BEGIN FOR i IN 1..n LOOP INSERT INTO single VALUES (i, 'v' || i); COMMIT; END LOOP; END $$`

// startPairs starts a cdcd pair and a native (publication + subscription)
// pair with the same schema, all four servers with conf; prepare runs on
// each first.
func startPairs(ctx context.Context, e *Env, srv *servers, conf map[string]string, prepare func(c *pgtest.Cluster, target bool) error) (cd, nat *pair, err error) {
	cd, nat = &pair{name: "cdcd"}, &pair{name: "native"}
	for _, x := range []struct {
		p    *pair
		name string
	}{{cd, "cdcd"}, {nat, "native"}} {
		if x.p.src, err = srv.start(ctx, x.name+"-src", conf); err != nil {
			return nil, nil, err
		}
		if x.p.dst, err = srv.start(ctx, x.name+"-dst", conf); err != nil {
			return nil, nil, err
		}
		for i, c := range []*pgtest.Cluster{x.p.src, x.p.dst} {
			if err := prepare(c, i == 1); err != nil {
				return nil, nil, err
			}
		}
	}
	if err := execSQL(ctx, nat.src, `CREATE PUBLICATION native FOR ALL TABLES`); err != nil {
		return nil, nil, err
	}
	if err := execSQL(ctx, nat.dst, fmt.Sprintf(`CREATE SUBSCRIPTION native CONNECTION 'host=127.0.0.1 port=%d dbname=postgres user=postgres' PUBLICATION native WITH (copy_data = false)`, nat.src.Port)); err != nil {
		return nil, nil, err
	}
	if cd.config, err = pipelineConfig(e, "cdcd", cd.src, cd.dst, ""); err != nil {
		return nil, nil, err
	}
	if err := cd.startCdcd(e); err != nil {
		return nil, nil, err
	}
	// The subscription's first connection: wait until it streams.
	if err := nat.drain(ctx); err != nil {
		return nil, nil, err
	}
	return cd, nat, cd.drain(ctx)
}

// benchApply: PG → PG end to end, cdcd (capture → trail → apply) vs native
// logical replication (which applies inside the server, in C). Each pair has
// its own two servers; the pairs run one after the other, alternating. It
// runs once per fsync setting of Sizes.Fsync: with fsync on, as on a real
// server, a synchronous commit waits for the disk — native's apply worker
// commits asynchronously, and so does cdcd's postgres sink by default.
func benchApply(ctx context.Context, e *Env, res *Results) error {
	fsync := e.Size.Fsync
	if len(fsync) == 0 {
		fsync = []string{"on"}
	}
	for _, f := range fsync {
		log.Printf("apply: servers with fsync = %s", f)
		if err := benchApplyFsync(ctx, e, res, f); err != nil {
			return fmt.Errorf("fsync %s: %w", f, err)
		}
	}
	return nil
}

// benchApplyFsync runs the apply workloads on servers with fsync set to
// fsync ("on": the headline keys, "off": keys suffixed .fsync-off).
func benchApplyFsync(ctx context.Context, e *Env, res *Results, fsync string) error {
	var srv servers
	defer srv.stop()
	conf := maps.Clone(benchConf)
	conf["fsync"] = fsync
	suffix, label := "", " (fsync "+fsync+")"
	if fsync != "on" {
		suffix = ".fsync-" + fsync
	}
	pgbench, err := pgBin("pgbench")
	if err != nil {
		return err
	}
	scale := e.Size.PgbenchScale
	cd, nat, err := startPairs(ctx, e, &srv, conf, func(c *pgtest.Cluster, _ bool) error {
		if err := execSQL(ctx, c, applyDDL, fillSingle); err != nil {
			return err
		}
		// pgbench's tables, loaded identically on source and target
		// (replication starts after this).
		out, err := exec.CommandContext(ctx, pgbench, "-i", "-q", "-s", fmt.Sprint(scale), "-d", c.DSN("postgres")).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pgbench -i: %v\n%s", err, out)
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer cd.stopCdcd()
	pairs := func(i int) []*pair {
		if i%2 == 0 {
			return []*pair{cd, nat}
		}
		return []*pair{nat, cd}
	}
	rows := e.Size.BigTxRows
	type timing struct{ cdcd, native []float64 }
	record := func(t *timing, p *pair, d time.Duration) {
		if p == cd {
			t.cdcd = append(t.cdcd, secs(d))
		} else {
			t.native = append(t.native, secs(d))
		}
		log.Printf("  %s %v", p.name, d.Round(time.Millisecond))
	}

	// (a) one big insert transaction, (b) one big update transaction:
	// from the source's commit to applied on the target.
	var ins, upd timing
	for i := range e.Size.Reps {
		for _, p := range pairs(i) {
			if err := execSQL(ctx, p.src, `TRUNCATE bench`); err != nil {
				return err
			}
			if err := p.drain(ctx); err != nil {
				return err
			}
			log.Printf("insert %s rows, rep %d", human(rows), i+1)
			if err := execSQL(ctx, p.src, fmt.Sprintf(`INSERT INTO bench SELECT g, g %% 1000, 'row ' || g, now(), g * 1.25 FROM generate_series(1, %d) g`, rows)); err != nil {
				return err
			}
			t0, tl := time.Now(), e.watch(p, "insert")
			err := p.drain(ctx)
			took := time.Since(t0)
			tl.stop()
			if err != nil {
				return err
			}
			record(&ins, p, took)
			log.Printf("update %s rows, rep %d", human(rows), i+1)
			if err := execSQL(ctx, p.src, `UPDATE bench SET a = a + 1, b = b || 'u'`); err != nil {
				return err
			}
			t0, tl = time.Now(), e.watch(p, "update")
			err = p.drain(ctx)
			took = time.Since(t0)
			tl.stop()
			if err != nil {
				return err
			}
			record(&upd, p, took)
		}
	}
	res.addRatio("apply.insert"+suffix, fmt.Sprintf("PG→PG one %s-row INSERT tx", human(rows))+label, "rows/s", float64(rows), "native logical replication", 1, ins.cdcd, ins.native)
	res.addRatio("apply.update"+suffix, fmt.Sprintf("PG→PG one %s-row UPDATE tx", human(rows))+label, "rows/s", float64(rows), "native logical replication", 1, upd.cdcd, upd.native)

	// (c) a backlog of single-row transactions committed while replication
	// was stopped: from restart to applied.
	var bl timing
	n := e.Size.Backlog
	for i := range e.Size.Reps {
		for _, p := range pairs(i) {
			if err := execSQL(ctx, p.src, `TRUNCATE single`); err != nil {
				return err
			}
			if err := p.drain(ctx); err != nil {
				return err
			}
			log.Printf("backlog of %s single-row transactions, rep %d", human(n), i+1)
			if p == cd {
				if err := cd.stopCdcd(); err != nil {
					return err
				}
			} else if err := execSQL(ctx, nat.dst, `ALTER SUBSCRIPTION native DISABLE`); err != nil {
				return err
			}
			// Committed before the clock starts: asynchronously, or with
			// fsync on the fill alone would take minutes.
			if err := execSQL(ctx, p.src, `SET synchronous_commit = off`, fmt.Sprintf(`CALL fill_single(%d)`, n)); err != nil {
				return err
			}
			t0 := time.Now()
			if p == cd {
				if err := cd.startCdcd(e); err != nil {
					return err
				}
			} else if err := execSQL(ctx, nat.dst, `ALTER SUBSCRIPTION native ENABLE`); err != nil {
				return err
			}
			tl := e.watch(p, "backlog")
			err := p.drain(ctx)
			took := time.Since(t0)
			tl.stop()
			if err != nil {
				return err
			}
			record(&bl, p, took)
		}
	}
	res.addRatio("apply.backlog"+suffix, fmt.Sprintf("PG→PG backlog of %s single-row tx", human(n))+label, "tx/s", float64(n), "native logical replication", 1, bl.cdcd, bl.native)

	// (d) the pgbench TPC-B-like mix, a fixed number of transactions on 4
	// clients while replication runs: from the start to applied.
	script := e.Work + "/pgbench.log"
	perClient := int(e.Size.PgbenchTime.Seconds()) * 100
	var mix timing
	for i := range e.Size.Reps {
		for _, p := range pairs(i) {
			log.Printf("pgbench mix, 4 clients × %d transactions, rep %d", perClient, i+1)
			t0, tl := time.Now(), e.watch(p, "pgbench")
			out, err := exec.CommandContext(ctx, pgbench, "-n", "-c", "4", "-j", "2", "-t", fmt.Sprint(perClient), "-d", p.src.DSN("postgres")).CombinedOutput()
			if err != nil {
				tl.stop()
				_ = os.WriteFile(script, out, 0o644)
				return fmt.Errorf("pgbench: %v\n%s", err, out)
			}
			err = p.drain(ctx)
			took := time.Since(t0)
			tl.stop()
			if err != nil {
				return err
			}
			record(&mix, p, took)
		}
	}
	res.addRatio("apply.pgbench"+suffix, fmt.Sprintf("PG→PG pgbench mix (4 × %d tx, while running)", perClient)+label, "tx/s", float64(4*perClient), "native logical replication", 1, mix.cdcd, mix.native)

	if err := cd.stopCdcd(); err != nil {
		return err
	}
	if err := sameTables(ctx, cd, nat); err != nil {
		return err
	}
	res.Notes = append(res.Notes, fmt.Sprintf("apply (fsync %s): cdcd peak RSS %.0f MiB across the PG→PG workloads", fsync, float64(cd.peak)/(1<<20)))
	return nil
}

// sameTables checks each pair's target equals its source, so a fast but
// wrong run cannot pass.
func sameTables(ctx context.Context, pairs ...*pair) error {
	for _, p := range pairs {
		for _, q := range []string{
			`SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '') FROM bench t`,
			`SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '') FROM single t`,
			`SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY aid)), '') FROM pgbench_accounts t`,
			`SELECT count(*)::text || ':' || sum(tbalance)::text FROM pgbench_tellers`,
			`SELECT count(*)::text || ':' || sum(delta)::text FROM pgbench_history`,
		} {
			var a, b string
			if err := p.src.QueryRow(q, &a); err != nil {
				return err
			}
			if err := p.dst.QueryRow(q, &b); err != nil {
				return err
			}
			if a != b {
				return fmt.Errorf("%s: target differs from source for %q: %s vs %s", p.name, q, b, a)
			}
		}
	}
	return nil
}
