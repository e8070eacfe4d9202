//! The report folder of an experiment: every measured number as Parquet and CSV
//! (`results.*`), the top-N vs random-N comparison per size (`summary.*`), SVG plots of
//! behaviour and perplexity against N, and `report.md` tying them together. Rewritten after
//! every condition through temporary files, so an interrupted run leaves a consistent report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use moescope_analysis::plot::{sweep_plot, Series};
use moescope_analysis::{bootstrap_grid_mean, Column, Estimate, OutputSet, Table};

use super::config::ExperimentConfig;
use super::{slug, Measured};
use crate::error::Result;

/// How an expert set was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The N best of the ranking.
    Top,
    /// N random experts of the same layers.
    Random,
}

impl Selection {
    /// `top` or `random #d`.
    pub fn label(self, draw: usize) -> String {
        match self {
            Selection::Top => "top".into(),
            Selection::Random => format!("random #{draw}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Selection::Top => "top",
            Selection::Random => "random",
        }
    }
}

/// One steered condition and what it measured.
pub struct Condition {
    /// Arm name.
    pub arm: String,
    /// Evaluation set name.
    pub eval: String,
    /// Number of experts steered.
    pub size: usize,
    /// Top or random.
    pub selection: Selection,
    /// 0 for the top set, 1.. for random draws.
    pub draw: usize,
    /// The experts, `L3:E7 …`.
    pub experts: String,
    /// Behaviour metrics.
    pub measured: Measured,
    /// Perplexity on the quality set.
    pub perplexity: Estimate,
}

/// Top-N against random-N at one size, for one arm and metric.
struct Comparison {
    size: usize,
    experts: String,
    top: Estimate,
    random: Estimate,
    draws: usize,
    separated: bool,
    ppl_top: f64,
    ppl_random: f64,
}

impl Comparison {
    /// The top set's perplexity change against `base_ppl`, in percent.
    fn ppl_change_pct(&self, base_ppl: f64) -> f64 {
        (self.ppl_top / base_ppl - 1.0) * 100.0
    }
}

/// The report being built.
pub struct Report<'a> {
    cfg: &'a ExperimentConfig,
    out: PathBuf,
    total: usize,
    notes: Vec<String>,
    ranking_md: String,
    baseline: BTreeMap<String, Measured>,
    baseline_quality: Option<Estimate>,
    conditions: Vec<Condition>,
}

impl<'a> Report<'a> {
    /// An empty report for `cfg` in `out`, expecting `total` conditions (baseline included).
    pub fn new(cfg: &'a ExperimentConfig, out: &Path, total: usize) -> Self {
        Self {
            cfg,
            out: out.to_path_buf(),
            total,
            notes: Vec::new(),
            ranking_md: String::new(),
            baseline: BTreeMap::new(),
            baseline_quality: None,
            conditions: Vec::new(),
        }
    }

    /// Adds a line to the report's notes.
    pub fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    /// Keeps the head of the detection ranking for the report.
    pub fn set_ranking(&mut self, ranking: &Table) {
        self.ranking_md = ranking.to_markdown(12);
    }

    /// The unsteered perplexity.
    pub fn set_baseline_quality(&mut self, e: Estimate) {
        self.baseline_quality = Some(e);
    }

    /// The unsteered behaviour on one evaluation set.
    pub fn set_baseline(&mut self, eval: &str, m: Measured) {
        self.baseline.insert(eval.to_string(), m);
    }

    /// Adds a finished condition.
    pub fn add(&mut self, c: Condition) {
        self.conditions.push(c);
    }

    fn baseline_value(&self, eval: &str, metric: &str) -> Option<Estimate> {
        self.baseline
            .get(eval)?
            .metrics
            .iter()
            .find(|m| m.0 == metric)
            .map(|m| m.2)
    }

    /// Top vs random per size for `arm` and `metric`, for sizes whose top set is measured.
    fn comparisons(&self, arm: &super::config::Arm, metric: &str) -> Vec<Comparison> {
        let mut out = Vec::new();
        for &size in &self.cfg.sweep.sizes {
            let of = |sel: Selection| {
                self.conditions
                    .iter()
                    .filter(move |c| c.arm == arm.name && c.size == size && c.selection == sel)
            };
            let Some(top) = of(Selection::Top).next() else {
                continue;
            };
            let values = |c: &Condition| {
                c.measured
                    .metrics
                    .iter()
                    .find(|m| m.0 == metric)
                    .map(|m| (m.1.clone(), m.2))
            };
            let Some((_, top_est)) = values(top) else {
                continue;
            };
            let grid: Vec<Vec<f64>> = of(Selection::Random)
                .filter_map(|c| values(c).map(|v| v.0))
                .collect();
            let random = bootstrap_grid_mean(&grid, 2000, 0.95, self.cfg.seed);
            let separated = match arm.expect.as_str() {
                "lower" => top_est.high < random.low,
                _ => top_est.low > random.high,
            };
            let ppls: Vec<f64> = of(Selection::Random).map(|c| c.perplexity.value).collect();
            out.push(Comparison {
                size,
                experts: top.experts.clone(),
                top: top_est,
                random,
                draws: grid.len(),
                separated: separated && !grid.is_empty(),
                ppl_top: top.perplexity.value,
                ppl_random: if ppls.is_empty() {
                    f64::NAN
                } else {
                    ppls.iter().sum::<f64>() / ppls.len() as f64
                },
            });
        }
        out
    }

    /// One line per arm: whether top-N beat random-N, and what it cost in perplexity.
    pub fn verdicts(&self) -> Vec<String> {
        let base_ppl = self.baseline_quality.map_or(f64::NAN, |e| e.value);
        let mut lines = Vec::new();
        for arm in &self.cfg.arms {
            let Some(metric) = self.primary_metric(&arm.eval) else {
                continue;
            };
            let comps = self.comparisons(arm, &metric);
            if comps.is_empty() {
                continue;
            }
            let sep: Vec<String> = comps
                .iter()
                .filter(|c| c.separated)
                .map(|c| c.size.to_string())
                .collect();
            let worst_ppl = comps
                .iter()
                .map(|c| (c.ppl_top / base_ppl - 1.0) * 100.0)
                .fold(0.0f64, |a, b| if b.abs() > a.abs() { b } else { a });
            let base = self
                .baseline_value(&arm.eval, &metric)
                .map_or(f64::NAN, |e| e.value);
            let moves = comps
                .iter()
                .map(|c| format!("N={}: {:.3}", c.size, c.top.value))
                .collect::<Vec<_>>()
                .join(", ");
            lines.push(format!(
                "- **{}** ({} on `{}`, expected {}): baseline {base:.3}; top-N {moves}. Top-N beats random-N with non-overlapping 95% intervals at {}. Largest perplexity change for top-N: {worst_ppl:+.1}%.",
                arm.name,
                metric,
                arm.eval,
                arm.expect,
                if sep.is_empty() {
                    "no N".to_string()
                } else {
                    format!("N ∈ {{{}}}", sep.join(", "))
                },
            ));
        }
        lines
    }

    fn primary_metric(&self, eval: &str) -> Option<String> {
        self.cfg
            .evals
            .iter()
            .find(|e| e.name == eval)
            .and_then(|e| e.metrics.first().cloned())
    }

    /// Every number as one long table.
    fn results_table(&self) -> Table {
        let mut rows = Vec::new();
        let baseline = |eval: &str, metric: &str, e: &Estimate| ResultRow {
            arm: "baseline".into(),
            eval: eval.into(),
            metric: metric.into(),
            size: 0,
            selection: "baseline",
            draw: 0,
            experts: String::new(),
            estimate: *e,
        };
        for (eval, m) in &self.baseline {
            for (metric, _, e) in &m.metrics {
                rows.push(baseline(eval, metric, e));
            }
        }
        if let Some(q) = &self.baseline_quality {
            rows.push(baseline("quality", "perplexity", q));
        }
        for c in &self.conditions {
            let quality = (
                "quality".to_string(),
                "perplexity".to_string(),
                c.perplexity,
            );
            let behaviour = c
                .measured
                .metrics
                .iter()
                .map(|(metric, _, e)| (c.eval.clone(), metric.clone(), *e));
            for (eval, metric, estimate) in behaviour.chain([quality]) {
                rows.push(ResultRow {
                    arm: c.arm.clone(),
                    eval,
                    metric,
                    size: c.size,
                    selection: c.selection.name(),
                    draw: c.draw,
                    experts: c.experts.clone(),
                    estimate,
                });
            }
        }
        let c = RowColumns(&rows);
        Table::default()
            .with("arm", c.text(|r| r.arm.clone()))
            .with("eval", c.text(|r| r.eval.clone()))
            .with("metric", c.text(|r| r.metric.clone()))
            .with("size", c.int(|r| r.size as u64))
            .with("selection", c.text(|r| r.selection.to_string()))
            .with("draw", c.int(|r| r.draw as u64))
            .with("value", c.float(|r| r.estimate.value))
            .with("low", c.float(|r| r.estimate.low))
            .with("high", c.float(|r| r.estimate.high))
            .with("n", c.int(|r| r.estimate.n as u64))
            .with("experts", c.text(|r| r.experts.clone()))
    }

    /// Top-N against random-N per arm, metric and size.
    fn summary_table(&self) -> Table {
        let base_ppl = self.baseline_quality.map_or(f64::NAN, |e| e.value);
        let mut rows = Vec::new();
        for arm in &self.cfg.arms {
            let metrics = self
                .cfg
                .evals
                .iter()
                .find(|e| e.name == arm.eval)
                .map(|e| e.metrics.clone())
                .unwrap_or_default();
            for metric in metrics {
                let baseline = self
                    .baseline_value(&arm.eval, &metric)
                    .map_or(f64::NAN, |e| e.value);
                for c in self.comparisons(arm, &metric) {
                    rows.push(SummaryRow {
                        arm: arm.name.clone(),
                        metric: metric.clone(),
                        expect: arm.expect.clone(),
                        baseline,
                        ppl_change_top_pct: c.ppl_change_pct(base_ppl),
                        comparison: c,
                    });
                }
            }
        }
        let c = RowColumns(&rows);
        Table::default()
            .with("arm", c.text(|r| r.arm.clone()))
            .with("metric", c.text(|r| r.metric.clone()))
            .with("size", c.int(|r| r.comparison.size as u64))
            .with("expect", c.text(|r| r.expect.clone()))
            .with("baseline", c.float(|r| r.baseline))
            .with("top", c.float(|r| r.comparison.top.value))
            .with("top_low", c.float(|r| r.comparison.top.low))
            .with("top_high", c.float(|r| r.comparison.top.high))
            .with("random", c.float(|r| r.comparison.random.value))
            .with("random_low", c.float(|r| r.comparison.random.low))
            .with("random_high", c.float(|r| r.comparison.random.high))
            .with("random_draws", c.int(|r| r.comparison.draws as u64))
            .with("separated", c.int(|r| u64::from(r.comparison.separated)))
            .with("ppl_top", c.float(|r| r.comparison.ppl_top))
            .with("ppl_random", c.float(|r| r.comparison.ppl_random))
            .with("ppl_change_top_pct", c.float(|r| r.ppl_change_top_pct))
            .with("top_experts", c.text(|r| r.comparison.experts.clone()))
    }

    /// Writes every file of the report; `complete` marks a finished run.
    /// The files land together: a failed write leaves the previous version of every one.
    pub fn write(&self, complete: bool) -> Result<()> {
        crate::outputs::writing(|| {
            let mut set = OutputSet::new();
            let results = self.results_table();
            results.write_parquet(&mut set, &self.out.join("results.parquet"))?;
            set.text(&self.out.join("results.csv"), &results.to_csv())?;
            let summary = self.summary_table();
            summary.write_parquet(&mut set, &self.out.join("summary.parquet"))?;
            set.text(&self.out.join("summary.csv"), &summary.to_csv())?;
            let plots = self.write_plots(&mut set)?;
            set.text(
                &self.out.join("report.md"),
                &self.markdown(complete, &plots),
            )?;
            set.commit()?;
            Ok(())
        })
    }

    /// Behaviour and perplexity against N, per arm; returns `(caption, file name)`.
    fn write_plots(&self, set: &mut OutputSet) -> Result<Vec<(String, String)>> {
        let mut plots = Vec::new();
        let base_ppl = self.baseline_quality.map(|e| e.value);
        for arm in &self.cfg.arms {
            let Some(eval) = self.cfg.evals.iter().find(|e| e.name == arm.eval) else {
                continue;
            };
            let mut ppl_series: Option<[Series; 2]> = None;
            for metric in &eval.metrics {
                let comps = self.comparisons(arm, metric);
                if comps.is_empty() {
                    continue;
                }
                let series = |name: &str, f: &dyn Fn(&Comparison) -> Estimate| Series {
                    name: name.to_string(),
                    points: comps
                        .iter()
                        .map(|c| {
                            let e = f(c);
                            (c.size as f64, e.value, e.low, e.high)
                        })
                        .collect(),
                };
                let file = format!("{}-{}.svg", slug(&arm.name), slug(metric));
                sweep_plot(
                    set,
                    &self.out.join(&file),
                    &format!("{}: {metric} on {} vs N", arm.name, arm.eval),
                    "experts steered (N)",
                    metric,
                    &[
                        series("top-N (95% CI)", &|c| c.top),
                        series("random-N, mean of draws (95% CI)", &|c| c.random),
                    ],
                    self.baseline_value(&arm.eval, metric)
                        .map(|e| ("unsteered".to_string(), e.value)),
                )?;
                plots.push((format!("{}: {metric} against N", arm.name), file));
                if ppl_series.is_none() {
                    let point = |c: &Comparison, v: f64| (c.size as f64, v, f64::NAN, f64::NAN);
                    ppl_series = Some([
                        Series {
                            name: "top-N".into(),
                            points: comps.iter().map(|c| point(c, c.ppl_top)).collect(),
                        },
                        Series {
                            name: "random-N (mean of draws)".into(),
                            points: comps.iter().map(|c| point(c, c.ppl_random)).collect(),
                        },
                    ]);
                }
            }
            if let Some(series) = ppl_series {
                let file = format!("{}-perplexity.svg", slug(&arm.name));
                sweep_plot(
                    set,
                    &self.out.join(&file),
                    &format!("{}: perplexity on neutral text vs N", arm.name),
                    "experts steered (N)",
                    "perplexity",
                    &series,
                    base_ppl.map(|v| ("unsteered".to_string(), v)),
                )?;
                plots.push((format!("{}: perplexity against N", arm.name), file));
            }
        }
        Ok(plots)
    }

    fn markdown(&self, complete: bool, plots: &[(String, String)]) -> String {
        let cfg = self.cfg;
        let mut md = String::new();
        let done = self.conditions.len() + usize::from(self.baseline_quality.is_some());
        let _ = writeln!(md, "# Experiment: {}\n", cfg.name);
        if !cfg.description.is_empty() {
            let _ = writeln!(md, "{}\n", cfg.description.trim());
        }
        let _ = writeln!(
            md,
            "Status: **{}** ({done} of {} conditions). Configuration: `config.resolved.toml`; every number: `results.parquet` / `results.csv`; top-N vs random-N: `summary.parquet` / `summary.csv`.\n",
            if complete { "complete" } else { "partial" },
            self.total
        );
        for n in &self.notes {
            let _ = writeln!(md, "> {n}\n");
        }
        let _ = writeln!(md, "## Findings\n");
        let verdicts = self.verdicts();
        if verdicts.is_empty() {
            let _ = writeln!(md, "No steered condition has finished yet.\n");
        }
        for v in verdicts {
            let _ = writeln!(md, "{v}");
        }
        let _ = writeln!(
            md,
            "\nRandom-N sets have as many experts in each layer as the top-N set, never one of its experts, drawn with the experiment's seed ({} draws per N, the same sets for every arm). Intervals are 95% percentile bootstraps: over prompts for top-N, over draws and prompts for random-N.\n",
            cfg.sweep.random_draws
        );
        let _ = writeln!(md, "## Detection\n");
        let _ = writeln!(
            md,
            "`{}` on `{}` ({} tokens generated per prompt, positions: {}), at most {} experts per layer. Full ranking: `ranking.parquet`, `ranking.csv`, `ranking.heatmap.svg`, `ranking.bars.svg`; recording: `detect-records/`.\n",
            cfg.detect.statistic,
            cfg.detect.prompts.display(),
            cfg.detect.generate,
            cfg.detect.positions,
            cfg.detect.max_per_layer.map_or("top_k".into(), |m| m.to_string()),
        );
        md.push_str(&self.ranking_md);
        let _ = writeln!(md, "\n![ranking](ranking.heatmap.svg)\n");
        let _ = writeln!(md, "## Unsteered\n");
        let _ = writeln!(
            md,
            "| set | metric | value | 95% interval | n |\n| --- | --- | ---: | --- | ---: |"
        );
        for (eval, m) in &self.baseline {
            for (metric, _, e) in &m.metrics {
                let _ = writeln!(
                    md,
                    "| {eval} | {metric} | {:.3} | [{:.3}, {:.3}] | {} |",
                    e.value, e.low, e.high, e.n
                );
            }
        }
        if let Some(q) = &self.baseline_quality {
            let _ = writeln!(
                md,
                "| {} | perplexity | {:.2} | [{:.2}, {:.2}] | {} |",
                cfg.quality.prompts.display(),
                q.value,
                q.low,
                q.high,
                q.n
            );
        }
        let base_ppl = self.baseline_quality.map_or(f64::NAN, |e| e.value);
        for arm in &cfg.arms {
            let Some(eval) = cfg.evals.iter().find(|e| e.name == arm.eval) else {
                continue;
            };
            let _ = writeln!(
                md,
                "\n## Arm: {} ({}{} on `{}`, scope {})\n",
                arm.name,
                arm.intervention,
                arm.value.map_or(String::new(), |v| format!(" {v}")),
                eval.prompts.display(),
                arm.scope
            );
            for metric in &eval.metrics {
                let comps = self.comparisons(arm, metric);
                if comps.is_empty() {
                    continue;
                }
                let _ = writeln!(md, "**{metric}** (expected {}):\n", arm.expect);
                let _ = writeln!(md, "| N | top-N | random-N (mean of {} draws) | separated | perplexity top-N (Δ) | perplexity random-N | top-N experts |\n| ---: | --- | --- | :---: | --- | ---: | --- |", cfg.sweep.random_draws);
                for c in comps {
                    let (t, r) = (c.top, c.random);
                    let sep = if c.separated { "yes" } else { "no" };
                    let _ = writeln!(
                        md,
                        "| {} | {:.3} [{:.3}, {:.3}] | {:.3} [{:.3}, {:.3}] | {sep} | {:.2} ({:+.1}%) | {:.2} | {} |",
                        c.size,
                        t.value,
                        t.low,
                        t.high,
                        r.value,
                        r.low,
                        r.high,
                        c.ppl_top,
                        c.ppl_change_pct(base_ppl),
                        c.ppl_random,
                        c.experts
                    );
                }
                let _ = writeln!(md);
            }
            for (caption, file) in plots
                .iter()
                .filter(|p| p.0.starts_with(&format!("{}:", arm.name)))
            {
                let _ = writeln!(md, "![{caption}]({file})\n");
            }
        }
        let _ = writeln!(
            md,
            "## Files\n\n`profiles/` holds the steering profile of every top-N condition (usable with `moescope generate --steer` and `moescope eval --steer`)."
        );
        md
    }
}

/// The columns of a table built from rows: each named column takes one value per row.
struct RowColumns<'r, R>(&'r [R]);

impl<R> RowColumns<'_, R> {
    fn text(&self, f: impl Fn(&R) -> String) -> Column {
        Column::Text(self.0.iter().map(f).collect())
    }

    fn int(&self, f: impl Fn(&R) -> u64) -> Column {
        Column::Int(self.0.iter().map(f).collect())
    }

    fn float(&self, f: impl Fn(&R) -> f64) -> Column {
        Column::Float(self.0.iter().map(f).collect())
    }
}

/// One row of results.parquet: an estimate of one metric under one condition.
struct ResultRow {
    arm: String,
    eval: String,
    metric: String,
    size: usize,
    selection: &'static str,
    draw: usize,
    experts: String,
    estimate: Estimate,
}

/// One row of summary.parquet: top-N against random-N for one arm, metric and size.
struct SummaryRow {
    arm: String,
    metric: String,
    expect: String,
    baseline: f64,
    ppl_change_top_pct: f64,
    comparison: Comparison,
}
