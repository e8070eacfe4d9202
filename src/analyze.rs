//! `moescope analyze <stat>`: runs one statistic over a records folder and exports the ranking
//! (Parquet, CSV, Markdown) with a layer × expert heatmap and a ranked bar chart (SVG).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use moescope_analysis::plot::{heatmap, ranked_bars, Cell};
use moescope_analysis::records::{RUN_FILE, TABLES};
use moescope_analysis::stats::consistency::consistency;
use moescope_analysis::stats::contrast::{contrast, risk_difference};
use moescope_analysis::stats::freq::frequency;
use moescope_analysis::stats::npmi::{npmi, TokenEvent};
use moescope_analysis::stats::super_experts::super_experts;
use moescope_analysis::table::write_text;
use moescope_analysis::{Positions, Records, Table};

use crate::cli::{AnalyzeArgs, SetsArgs, Stat, StatCommon};

/// How a ranking is plotted: the column coloured on the heatmap and charted as bars, and
/// whether its values are signed (diverging colours).
pub struct PlotSpec {
    /// Column plotted.
    pub value: &'static str,
    /// Whether values have a sign (diverging colours).
    pub signed: bool,
}

/// Runs the statistic and writes its outputs.
pub fn run(args: &AnalyzeArgs) -> Result<()> {
    match &args.stat {
        Stat::Freq(common) => {
            let rec = open(common)?;
            let f = spin("frequency", || Ok(frequency(&rec, positions(common)?)?))?;
            let experts = f.experts.sorted_desc("rate", false);
            export(
                common,
                "",
                &experts,
                Some(PlotSpec {
                    value: "rate",
                    signed: false,
                }),
                "activation rate",
            )?;
            export(common, "layers", &f.layers, None, "")?;
            export(common, "coactivation", &f.coactivation, None, "")?;
            Ok(())
        }
        Stat::Npmi {
            common,
            tokens,
            label,
            span,
            min_count,
        } => {
            let event = npmi_event(tokens.as_deref(), label.as_deref(), span.as_deref())?;
            let rec = open(common)?;
            let t = spin("nPMI", || {
                Ok(npmi(&rec, &event, *min_count, positions(common)?)?)
            })?;
            export(
                common,
                "",
                &t,
                Some(PlotSpec {
                    value: "npmi",
                    signed: true,
                }),
                "nPMI",
            )
        }
        Stat::Rd(s) => compare_sets(s, "risk difference", "delta", risk_difference),
        Stat::Contrast(s) => compare_sets(s, "contrast z", "z", contrast),
        Stat::Consistency {
            common,
            segment,
            cache,
        } => {
            let rec = open(common)?;
            let t = spin("consistency", || Ok(consistency(&rec, *segment, *cache)?))?;
            export(common, "", &t, None, "")
        }
        Stat::Attribute(a) => crate::attribute::run(a),
        Stat::SuperExperts { common, factor } => {
            let rec = open(common)?;
            let t = spin("super experts", || Ok(super_experts(&rec, *factor)?))?;
            let title = "peak |down_proj output| ÷ layer median";
            export(
                common,
                "",
                &t,
                Some(PlotSpec {
                    value: "ratio",
                    signed: false,
                }),
                title,
            )
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

/// A behaviour-vs-control statistic of the analysis crate.
type SetStat = fn(&Records, &str, &str, Positions) -> moescope_analysis::error::Result<Table>;

/// Runs a behaviour-vs-control statistic and exports it, plotted by `value`.
fn compare_sets(s: &SetsArgs, name: &str, value: &'static str, stat: SetStat) -> Result<()> {
    let rec = open(&s.common)?;
    let t = spin(name, || {
        Ok(stat(&rec, &s.behaviour, &s.control, positions(&s.common)?)?)
    })?;
    let title = format!("{name}, {} vs {}", s.behaviour, s.control);
    export(
        &s.common,
        "",
        &t,
        Some(PlotSpec {
            value,
            signed: true,
        }),
        &title,
    )
}

fn open(common: &StatCommon) -> Result<Records> {
    let rec = Records::open(&common.records)?;
    if !rec.run.complete {
        eprintln!(
            "note: {} is from an interrupted run; it holds only the sequences finished by then",
            common.records.display()
        );
    }
    Ok(rec)
}

fn positions(common: &StatCommon) -> Result<Positions> {
    common
        .positions
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--positions: {e}"))
}

/// Runs `f` behind a spinner saying what is computed.
pub fn spin<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let bar = ProgressBar::new_spinner().with_message(format!("computing {what}"));
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})")?);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let out = f();
    bar.finish_and_clear();
    out
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

fn export(
    common: &StatCommon,
    part: &str,
    table: &Table,
    plot: Option<PlotSpec>,
    title: &str,
) -> Result<()> {
    let written = write_ranking(&common.out, common.top, part, table, plot, title)?;
    if part.is_empty() {
        print!("{}", table.to_markdown(common.top));
    }
    for p in written {
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

/// Writes a ranking as OUT.parquet, OUT.csv, OUT.md (top rows) and, with a plot spec, the
/// heatmap and the bar chart of the top rows; returns the paths written.
pub fn write_ranking(
    out: &Path,
    top: usize,
    part: &str,
    table: &Table,
    plot: Option<PlotSpec>,
    title: &str,
) -> Result<Vec<PathBuf>> {
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
    let mut written = Vec::new();
    let p = output_path(out, part, "parquet");
    table.write_parquet(&p)?;
    written.push(p);
    let p = output_path(out, part, "csv");
    write_text(&p, &table.to_csv())?;
    written.push(p);
    let p = output_path(out, part, "md");
    write_text(&p, &table.to_markdown(top))?;
    written.push(p);
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
        heatmap(&p, title, &cells, spec.signed)?;
        written.push(p);
        let bars: Vec<(String, f64)> = cells
            .iter()
            .take(top)
            .map(|c| (format!("L{} E{}", c.layer, c.expert), c.value))
            .collect();
        let p = output_path(out, part, "bars.svg");
        ranked_bars(&p, &format!("top {} by {title}", bars.len()), &bars)?;
        written.push(p);
    }
    Ok(written)
}
