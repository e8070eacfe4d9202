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
use moescope_analysis::{OutputSet, Positions, Records, Table};

use crate::cli::{AnalyzeArgs, SetsArgs, Stat, StatCommon};

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
    fn table(part: &'static str, table: Table) -> Self {
        Self {
            part,
            table,
            plot: None,
            title: String::new(),
        }
    }

    fn plotted(table: Table, value: &'static str, signed: bool, title: &str) -> Self {
        Self {
            part: "",
            table,
            plot: Some(PlotSpec { value, signed }),
            title: title.to_string(),
        }
    }
}

/// Runs the statistic and writes its outputs.
pub fn run(args: &AnalyzeArgs) -> Result<()> {
    crate::session::end_at_once_on_interrupt();
    let (common, exports) = match &args.stat {
        Stat::Attribute(a) => return crate::attribute::run(a),
        Stat::Freq(common) => {
            let rec = open(common)?;
            let f = spin("frequency", || Ok(frequency(&rec, positions(common)?)?))?;
            let experts = f.experts.sorted_desc("rate", false);
            let exports = vec![
                Export::plotted(experts, "rate", false, "activation rate"),
                Export::table("layers", f.layers),
                Export::table("coactivation", f.coactivation),
            ];
            (common, exports)
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
            (common, vec![Export::plotted(t, "npmi", true, "nPMI")])
        }
        Stat::Rd(s) => compare_sets(s, "risk difference", "delta", risk_difference)?,
        Stat::Contrast(s) => compare_sets(s, "contrast z", "z", contrast)?,
        Stat::Consistency {
            common,
            segment,
            cache,
        } => {
            let rec = open(common)?;
            let t = spin("consistency", || Ok(consistency(&rec, *segment, *cache)?))?;
            (common, vec![Export::table("", t)])
        }
        Stat::SuperExperts { common, factor } => {
            let rec = open(common)?;
            let t = spin("super experts", || Ok(super_experts(&rec, *factor)?))?;
            let title = "peak |down_proj output| ÷ layer median";
            (common, vec![Export::plotted(t, "ratio", false, title)])
        }
    };
    let written = write_exports(&common.out, common.top, &exports)?;
    print!("{}", exports[0].table.to_markdown(common.top));
    say_written(&written);
    Ok(())
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

/// Runs a behaviour-vs-control statistic, to be exported plotted by `value`.
fn compare_sets<'a>(
    s: &'a SetsArgs,
    name: &str,
    value: &'static str,
    stat: SetStat,
) -> Result<(&'a StatCommon, Vec<Export>)> {
    let rec = open(&s.common)?;
    let t = spin(name, || {
        Ok(stat(&rec, &s.behaviour, &s.control, positions(&s.common)?)?)
    })?;
    let title = format!("{name}, {} vs {}", s.behaviour, s.control);
    Ok((&s.common, vec![Export::plotted(t, value, true, &title)]))
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

/// Writes every export as one output set (nothing lands unless all of them are complete, and
/// a signal waits for the renames); returns the files written.
pub fn write_exports(out: &Path, top: usize, exports: &[Export]) -> Result<Vec<PathBuf>> {
    crate::session::writing(|| {
        let mut set = OutputSet::new();
        for e in exports {
            write_ranking(&mut set, out, top, e)?;
        }
        Ok(set.commit()?)
    })
}

/// Says which files a command wrote.
pub fn say_written(paths: &[PathBuf]) {
    for p in paths {
        eprintln!("wrote {}", p.display());
    }
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
