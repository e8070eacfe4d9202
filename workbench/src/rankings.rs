//! Expert rankings from a records folder: the statistics of the analysis crate run by name,
//! and their export (Parquet, CSV, Markdown) with a layer × expert heatmap and a ranked bar
//! chart (SVG), written as one output set.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use moescope_analysis::plot::{heatmap, ranked_bars, Cell};
use moescope_analysis::records::{RUN_FILE, TABLES};
use moescope_analysis::stats::consistency::consistency;
use moescope_analysis::stats::contrast::{contrast, risk_difference};
use moescope_analysis::stats::freq::frequency;
use moescope_analysis::stats::npmi::{npmi, TokenEvent};
use moescope_analysis::stats::super_experts::super_experts;
use moescope_analysis::{OutputSet, Positions, Records, Table};

use crate::error::{bail, input_error, Result, ResultExt};
use crate::progress::{stage, Progress};

/// A statistic over a records folder that ranks experts.
#[derive(Debug, Clone)]
pub enum Statistic {
    /// Activation count, rate and mean weight per expert; per-layer entropy and imbalance;
    /// co-activation of expert pairs.
    Frequency,
    /// nPMI between a token event and each expert; pairs seen together fewer than
    /// `min_count` times are dropped.
    Npmi {
        /// The event.
        event: TokenEvent,
        /// Least co-occurrence count kept.
        min_count: u64,
    },
    /// Risk difference p1 − p2 between two labelled sets, ranked by |Δ|.
    RiskDifference {
        /// Label of the behaviour set.
        behaviour: String,
        /// Label of the control set.
        control: String,
    },
    /// Behaviour set vs control set, ranked by a two-proportion z-test.
    Contrast {
        /// Label of the behaviour set.
        behaviour: String,
        /// Label of the control set.
        control: String,
    },
    /// Local routing consistency per layer.
    Consistency {
        /// Segment length in tokens.
        segment: usize,
        /// Cache size in experts.
        cache: usize,
    },
    /// Experts whose down-projection output peaks `factor` times above their layer's median.
    SuperExperts {
        /// Least ratio flagged.
        factor: f64,
    },
}

impl Statistic {
    /// Runs the statistic over `rec` (at `positions` where it counts tokens), as one stage of
    /// `progress`; the first export is the ranking itself.
    pub fn rank(
        &self,
        rec: &Records,
        positions: Positions,
        progress: &dyn Progress,
    ) -> Result<Vec<Export>> {
        let computing = |what: &str| format!("computing {what}");
        Ok(match self {
            Statistic::Frequency => {
                let f = stage(progress, &computing("frequency"), || {
                    frequency(rec, positions)
                })?;
                vec![
                    Export::plotted(
                        f.experts.sorted_desc("rate", false),
                        "rate",
                        false,
                        "activation rate",
                    ),
                    Export::table("layers", f.layers),
                    Export::table("coactivation", f.coactivation),
                ]
            }
            Statistic::Npmi { event, min_count } => {
                let t = stage(progress, &computing("nPMI"), || {
                    npmi(rec, event, *min_count, positions)
                })?;
                vec![Export::plotted(t, "npmi", true, "nPMI")]
            }
            Statistic::RiskDifference { behaviour, control } => {
                let name = "risk difference";
                let t = stage(progress, &computing(name), || {
                    risk_difference(rec, behaviour, control, positions)
                })?;
                let title = format!("{name}, {behaviour} vs {control}");
                vec![Export::plotted(t, "delta", true, &title)]
            }
            Statistic::Contrast { behaviour, control } => {
                let name = "contrast z";
                let t = stage(progress, &computing(name), || {
                    contrast(rec, behaviour, control, positions)
                })?;
                let title = format!("{name}, {behaviour} vs {control}");
                vec![Export::plotted(t, "z", true, &title)]
            }
            Statistic::Consistency { segment, cache } => {
                let t = stage(progress, &computing("consistency"), || {
                    consistency(rec, *segment, *cache)
                })?;
                vec![Export::table("", t)]
            }
            Statistic::SuperExperts { factor } => {
                let t = stage(progress, &computing("super experts"), || {
                    super_experts(rec, *factor)
                })?;
                let title = "peak |down_proj output| ÷ layer median";
                vec![Export::plotted(t, "ratio", false, title)]
            }
        })
    }
}

/// Parses which token positions a statistic counts: `all`, `prompt` or `generated`.
pub fn parse_positions(text: &str) -> Result<Positions> {
    text.parse()
        .map_err(|e: String| input_error!("--positions: {e}"))
}

/// How a ranking is plotted: the column coloured on the heatmap and charted as bars, and
/// whether its values are signed (diverging colours).
pub struct PlotSpec {
    /// Column plotted.
    pub value: &'static str,
    /// Whether values have a sign (diverging colours).
    pub signed: bool,
}

/// One ranking table to write, with its file-name part, plot and title.
pub struct Export {
    /// Suffix of the file names (`OUT-part.parquet`); empty for the main table.
    pub part: &'static str,
    /// The ranking.
    pub table: Table,
    /// How to plot it, if at all.
    pub plot: Option<PlotSpec>,
    /// Plot title.
    pub title: String,
}

impl Export {
    /// A table written without plots.
    pub fn table(part: &'static str, table: Table) -> Self {
        Self {
            part,
            table,
            plot: None,
            title: String::new(),
        }
    }

    /// The main table, plotted by `value`.
    pub fn plotted(table: Table, value: &'static str, signed: bool, title: &str) -> Self {
        Self {
            part: "",
            table,
            plot: Some(PlotSpec { value, signed }),
            title: title.to_string(),
        }
    }
}

/// The nPMI event from exactly one of a token list, a label or an `OPEN,CLOSE` span.
pub fn npmi_event(
    tokens: Option<&str>,
    label: Option<&str>,
    span: Option<&str>,
) -> Result<TokenEvent> {
    let event = match (tokens, label, span) {
        (Some(t), None, None) => TokenEvent::Tokens(
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect::<HashSet<_>>(),
        ),
        (None, Some(l), None) => TokenEvent::Label(l.to_string()),
        (None, None, Some(s)) => {
            let Some((open, close)) = s.split_once(',') else {
                bail!("--span {s}: expected OPEN,CLOSE, e.g. --span \"<think>,</think>\"");
            };
            TokenEvent::Span {
                open: open.trim().to_string(),
                close: close.trim().to_string(),
            }
        }
        _ => {
            bail!("npmi needs exactly one event: --tokens LIST, --label NAME or --span OPEN,CLOSE")
        }
    };
    if let TokenEvent::Tokens(set) = &event {
        if set.is_empty() {
            bail!("--tokens: give at least one token, e.g. --tokens \"<think>\"");
        }
    }
    Ok(event)
}

/// Fails when `path` is one of the tables of a records folder (`--out rec/routing` would
/// replace `rec/routing.parquet`): an output never replaces an input.
fn refuse_replacing_records(path: &Path) -> Result<()> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if TABLES.contains(&name) && dir.join(RUN_FILE).is_file() {
        bail!(
            "--out {}: this output would replace {}, a table of the records in {}; choose an \
             --out outside the records folder or with another name",
            path.with_extension("").display(),
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// `OUT` with `.suffix` (and `-part` before it when `part` is not empty).
fn output_path(out: &Path, part: &str, suffix: &str) -> PathBuf {
    let mut base = out.to_path_buf();
    if matches!(
        base.extension().and_then(|e| e.to_str()),
        Some("parquet" | "csv" | "md")
    ) {
        base.set_extension("");
    }
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "ranking".into());
    let name = if part.is_empty() {
        format!("{name}.{suffix}")
    } else {
        format!("{name}-{part}.{suffix}")
    };
    base.with_file_name(name)
}

/// Writes every export as one output set (nothing lands unless all of them are complete, and
/// a signal waits for the renames); returns the files written.
pub fn write_exports(out: &Path, top: usize, exports: &[Export]) -> Result<Vec<PathBuf>> {
    crate::outputs::writing(|| {
        let mut set = OutputSet::new();
        for e in exports {
            write_ranking(&mut set, out, top, e)?;
        }
        Ok(set.commit()?)
    })
}

/// Stages a ranking as OUT.parquet, OUT.csv, OUT.md (top rows) and, with a plot spec, the
/// heatmap and the bar chart of the top rows, into `set`.
fn write_ranking(set: &mut OutputSet, out: &Path, top: usize, export: &Export) -> Result<()> {
    let Export {
        part,
        table,
        plot,
        title,
    } = export;
    if let Some(dir) = output_path(out, part, "md").parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the folder {}", dir.display()))?;
        }
    }
    let suffixes: &[&str] = if plot.is_some() {
        &["parquet", "csv", "md", "heatmap.svg", "bars.svg"]
    } else {
        &["parquet", "csv", "md"]
    };
    for suffix in suffixes {
        refuse_replacing_records(&output_path(out, part, suffix))?;
    }
    table.write_parquet(set, &output_path(out, part, "parquet"))?;
    set.text(&output_path(out, part, "csv"), &table.to_csv())?;
    set.text(&output_path(out, part, "md"), &table.to_markdown(top))?;
    if let Some(spec) = plot {
        let values = table.floats(spec.value).unwrap_or_default();
        let layers = table.floats("layer").unwrap_or_default();
        let experts = table.floats("expert").unwrap_or_default();
        let cells: Vec<Cell> = (0..table.num_rows())
            .map(|i| Cell {
                layer: layers[i] as u32,
                expert: experts[i] as u32,
                value: values[i],
            })
            .collect();
        let p = output_path(out, part, "heatmap.svg");
        heatmap(set, &p, title, &cells, spec.signed)?;
        let bars: Vec<(String, f64)> = cells
            .iter()
            .take(top)
            .map(|c| (format!("L{} E{}", c.layer, c.expert), c.value))
            .collect();
        let p = output_path(out, part, "bars.svg");
        ranked_bars(set, &p, &format!("top {} by {title}", bars.len()), &bars)?;
    }
    Ok(())
}
