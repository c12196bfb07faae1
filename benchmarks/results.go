package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Machine describes where the figures were measured.
type Machine struct {
	Host      string `json:"host"`
	CPU       string `json:"cpu"`
	CPUs      int    `json:"cpus"`
	MemoryMiB uint64 `json:"memory_mib"`
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	Go        string `json:"go"`
}

// Ratio is one workload measured with cdcd and with its reference.
type Ratio struct {
	// Key names the ratio in the floors file: scenario.workload.
	Key       string  `json:"key"`
	Workload  string  `json:"workload"`
	Unit      string  `json:"unit"` // of Cdcd and Ref: rows/s, tx/s
	Cdcd      float64 `json:"cdcd"`
	Reference string  `json:"reference"`
	Ref       float64 `json:"ref"`
	// Ratio is cdcd's throughput over the reference's (medians): > 1 is faster.
	Ratio float64 `json:"ratio"`
	// Goal is the ratio the project holds itself to.
	Goal float64 `json:"goal"`
	// Runs are the individual timings, seconds.
	CdcdRuns []float64 `json:"cdcd_runs_s"`
	RefRuns  []float64 `json:"ref_runs_s"`
	Note     string    `json:"note,omitempty"`
}

// MemoryPoint is cdcd's peak RSS replicating one transaction of Rows rows.
type MemoryPoint struct {
	Rows       int     `json:"rows"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	Seconds    float64 `json:"seconds"`
}

// Latency is the commit → applied distribution of one system.
type Latency struct {
	System  string    `json:"system"`
	Rate    int       `json:"rate_tx_s"`
	Samples int       `json:"samples"`
	P50     float64   `json:"p50_ms"`
	P95     float64   `json:"p95_ms"`
	P99     float64   `json:"p99_ms"`
	Max     float64   `json:"max_ms"`
	sorted  []float64 // ms, for the chart
}

// Results is one run of the benchmarks.
type Results struct {
	Date    string        `json:"date"`
	Size    string        `json:"size"`
	Machine Machine       `json:"machine"`
	Ratios  []Ratio       `json:"ratios"`
	Memory  []MemoryPoint `json:"memory,omitempty"`
	Latency []Latency     `json:"latency,omitempty"`
	Notes   []string      `json:"notes,omitempty"`
	// Scenarios lists the scenarios this run measured.
	Scenarios []string `json:"scenarios"`
}

// addRatio records a workload from its per-run timings (seconds) of work units.
func (r *Results) addRatio(key, workload, unit string, units float64, reference string, goal float64, cdcdRuns, refRuns []float64) Ratio {
	c, f := median(cdcdRuns), median(refRuns)
	x := Ratio{Key: key, Workload: workload, Unit: unit, Cdcd: units / c, Reference: reference, Ref: units / f,
		Ratio: f / c, Goal: goal, CdcdRuns: cdcdRuns, RefRuns: refRuns}
	r.Ratios = append(r.Ratios, x)
	fmt.Printf("%-28s cdcd %12.0f %s   %-22s %12.0f %s   ratio %.2f (goal %.2f)\n",
		key, x.Cdcd, unit, reference, x.Ref, unit, x.Ratio, goal)
	return x
}

func (r *Results) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	host := r.Machine.Host
	if host == "" {
		host = "unknown"
	}
	day, _ := time.Parse(time.RFC3339, r.Date)
	base := filepath.Join(dir, fmt.Sprintf("%s-%s-%s", day.Format("2006-01-02"), host, r.Size))
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".json", append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(base+".md", []byte(r.markdown()), 0o644); err != nil {
		return err
	}
	for _, c := range []struct {
		suffix string
		draw   func(string) error
	}{{"-throughput.png", r.chartThroughput}, {"-memory.png", r.chartMemory}, {"-latency.png", r.chartLatency}} {
		if err := c.draw(base + c.suffix); err != nil {
			return fmt.Errorf("chart %s: %w", c.suffix, err)
		}
	}
	fmt.Printf("results: %s.{json,md} and charts %s-*.png\n", base, base)
	return nil
}

func (r *Results) markdown() string {
	var s strings.Builder
	m := r.Machine
	fmt.Fprintf(&s, "# cdcd benchmarks — %s (%s size)\n\n", r.Date, r.Size)
	fmt.Fprintf(&s, "Machine: %s, %d CPUs (%s), %d MiB RAM, %s/%s, %s. Medians of the runs; ratio = cdcd throughput / reference throughput.\n\n",
		m.Host, m.CPUs, m.CPU, m.MemoryMiB, m.GOOS, m.GOARCH, m.Go)
	if len(r.Ratios) > 0 {
		s.WriteString("| workload | cdcd | reference | reference figure | ratio | goal |\n|---|---:|---|---:|---:|---:|\n")
		for _, x := range r.Ratios {
			fmt.Fprintf(&s, "| %s | %.0f %s | %s | %.0f %s | **%.2f** | %.2f |\n", mdCell(x.Workload), x.Cdcd, x.Unit, mdCell(x.Reference), x.Ref, x.Unit, x.Ratio, x.Goal)
		}
		s.WriteString("\n")
	}
	if len(r.Latency) > 0 {
		s.WriteString("| commit → applied latency | rate | samples | p50 | p95 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, l := range r.Latency {
			fmt.Fprintf(&s, "| %s | %d tx/s | %d | %.1f ms | %.1f ms | %.1f ms | %.1f ms |\n", l.System, l.Rate, l.Samples, l.P50, l.P95, l.P99, l.Max)
		}
		s.WriteString("\n")
	}
	if len(r.Memory) > 0 {
		s.WriteString("| one transaction of | cdcd peak RSS | replicated in |\n|---:|---:|---:|\n")
		for _, p := range r.Memory {
			fmt.Fprintf(&s, "| %s rows | %.0f MiB | %.1f s |\n", human(p.Rows), p.PeakRSSMiB, p.Seconds)
		}
		s.WriteString("\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&s, "- %s\n", n)
	}
	return s.String()
}

// mdCell escapes the pipes of a Markdown table cell (pg_dump | psql).
func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func (r *Results) chartThroughput(path string) error {
	if len(r.Ratios) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = "cdcd vs reference (throughput relative to the reference)"
	p.Y.Label.Text = "throughput / reference"
	cd, ref := make(plotter.Values, len(r.Ratios)), make(plotter.Values, len(r.Ratios))
	var names []string
	top := 1.0
	for i, x := range r.Ratios {
		cd[i], ref[i] = x.Ratio, 1
		top = max(top, x.Ratio)
		names = append(names, fmt.Sprintf("%s\n%s", x.Key, x.Reference))
	}
	w := vg.Points(14)
	b1, err := plotter.NewBarChart(cd, w)
	if err != nil {
		return err
	}
	b1.Color = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	b1.Offset = -w / 2
	b2, err := plotter.NewBarChart(ref, w)
	if err != nil {
		return err
	}
	b2.Color = color.RGBA{R: 0xbb, G: 0xbb, B: 0xbb, A: 0xff}
	b2.Offset = w / 2
	p.Add(b1, b2, plotter.NewGrid())
	p.Y.Min, p.Y.Max = 0, top*1.3 // room for the legend above the bars
	p.Legend.Add("cdcd", b1)
	p.Legend.Add("reference", b2)
	p.Legend.Top = true
	p.NominalX(names...)
	return p.Save(vg.Length(max(6, 1.6*float64(len(names))))*vg.Inch, 4*vg.Inch, path)
}

func (r *Results) chartMemory(path string) error {
	if len(r.Memory) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = "cdcd peak RSS vs source transaction size"
	p.X.Label.Text = "rows in one transaction (millions)"
	p.Y.Label.Text = "peak RSS (MiB)"
	pts := make(plotter.XYs, len(r.Memory))
	top := 0.0
	for i, m := range r.Memory {
		pts[i].X, pts[i].Y = float64(m.Rows)/1e6, m.PeakRSSMiB
		top = max(top, m.PeakRSSMiB)
	}
	p.Y.Min, p.Y.Max = 0, top*1.5
	if err := plotutil.AddLinePoints(p, "cdcd", pts); err != nil {
		return err
	}
	p.Add(plotter.NewGrid())
	return p.Save(6*vg.Inch, 4*vg.Inch, path)
}

func (r *Results) chartLatency(path string) error {
	if len(r.Latency) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = "commit → applied latency (CDF)"
	p.X.Label.Text = "latency (ms)"
	p.Y.Label.Text = "fraction of transactions"
	var args []any
	for _, l := range r.Latency {
		s := l.sorted
		if len(s) == 0 {
			continue
		}
		step := max(1, len(s)/400)
		var pts plotter.XYs
		for i := 0; i < len(s); i += step {
			pts = append(pts, plotter.XY{X: s[i], Y: float64(i+1) / float64(len(s))})
		}
		pts = append(pts, plotter.XY{X: s[len(s)-1], Y: 1})
		args = append(args, l.System, pts)
	}
	if err := plotutil.AddLines(p, args...); err != nil {
		return err
	}
	p.Legend.Top = false
	p.Legend.Left = false
	p.Add(plotter.NewGrid())
	return p.Save(6*vg.Inch, 4*vg.Inch, path)
}

// Floors are the minimum ratios per size, by ratio key. They only go up.
type Floors map[string]map[string]float64

func loadFloors(path string) (Floors, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f Floors
	if err := yaml.UnmarshalWithOptions(b, &f, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// check lists the ratios of this run's size below their floors, and floors
// naming a ratio this run should have measured but did not.
func (f Floors) check(r *Results) []string {
	var failed []string
	floors := f[r.Size]
	got := map[string]float64{}
	for _, x := range r.Ratios {
		got[x.Key] = x.Ratio
		if min, ok := floors[x.Key]; ok && x.Ratio < min {
			failed = append(failed, fmt.Sprintf("%s: ratio %.2f < floor %.2f (cdcd %.0f %s vs %s %.0f %s)", x.Key, x.Ratio, min, x.Cdcd, x.Unit, x.Reference, x.Ref, x.Unit))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(floors)) {
		if _, ok := got[k]; !ok && slices.ContainsFunc(r.Scenarios, func(s string) bool { return ofScenario(k, s) }) {
			failed = append(failed, fmt.Sprintf("%s: has a floor but was not measured", k))
		}
	}
	return failed
}

// ofScenario reports whether ratio key k is measured by scenario s: keys
// are scenario.workload (capture.rows), or the scenario's own name when the
// name already has a dot and the scenario measures one ratio (trigger.cost).
func ofScenario(k, s string) bool { return k == s || strings.HasPrefix(k, s+".") }
