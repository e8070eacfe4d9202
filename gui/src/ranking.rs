//! An expert ranking written by `moescope analyze` (or an experiment), loaded from its Parquet
//! file so its scores can colour the layer × expert grid and fill the inspector.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use moescope_analysis::table::{Column, Table};

use crate::error::{require_path, GuiError, Result};

/// A loaded ranking: every numeric column, per (layer, expert).
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// Where it came from.
    pub path: PathBuf,
    /// Numeric column names in file order (layer and expert excluded).
    pub columns: Vec<String>,
    /// Index into `columns` of the score that colours the grid.
    pub selected: usize,
    /// `(layer, expert)` → one value per column.
    pub values: BTreeMap<(usize, usize), Vec<f64>>,
    /// `(layer, expert)` in the file's order (best first).
    pub order: Vec<(usize, usize)>,
}

impl Ranking {
    /// Reads a ranking Parquet file; it needs integer `layer` and `expert` columns.
    pub fn load(path: &Path) -> Result<Self> {
        require_path(path, "a ranking (.parquet from `moescope analyze`)")?;
        Self::from_table(path, &Table::read_parquet(path)?)
    }

    /// A ranking from a table in memory (named `source` in messages and the window); it needs
    /// integer `layer` and `expert` columns.
    pub fn from_table(source: &Path, table: &Table) -> Result<Self> {
        let path = source;
        let ids = |name: &str| match table.column(name) {
            Some(Column::Int(v)) => Ok(v.iter().map(|&x| x as usize).collect::<Vec<_>>()),
            _ => Err(GuiError::Input(format!(
                "{}: no integer `{name}` column; load a ranking written by `moescope analyze`",
                path.display()
            ))),
        };
        let (layers, experts) = (ids("layer")?, ids("expert")?);
        let numeric: Vec<(String, Vec<f64>)> = table
            .columns
            .iter()
            .filter(|(n, _)| n != "layer" && n != "expert")
            .filter_map(|(n, c)| match c {
                Column::Float(v) => Some((n.clone(), v.clone())),
                Column::Int(v) => Some((n.clone(), v.iter().map(|&x| x as f64).collect())),
                Column::Text(_) => None,
            })
            .collect();
        if numeric.is_empty() {
            return Err(GuiError::Input(format!(
                "{}: no numeric score column",
                path.display()
            )));
        }
        let order: Vec<(usize, usize)> = layers.into_iter().zip(experts).collect();
        let values = order
            .iter()
            .enumerate()
            .map(|(row, &key)| (key, numeric.iter().map(|(_, v)| v[row]).collect()))
            .collect();
        let columns: Vec<String> = numeric.into_iter().map(|(n, _)| n).collect();
        let selected = columns.iter().position(|c| !is_rank_column(c)).unwrap_or(0);
        Ok(Self {
            path: path.to_path_buf(),
            columns,
            selected,
            values,
            order,
        })
    }

    /// Indices of the columns that are scores (higher is more), the ones offered as colours:
    /// every column but ranks, where 1 is the best and a larger number means less.
    pub fn score_columns(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| !is_rank_column(&self.columns[i]))
            .collect()
    }

    /// The selected score of an expert (NaN when the ranking does not list it).
    pub fn score(&self, layer: usize, expert: usize) -> f64 {
        self.values
            .get(&(layer, expert))
            .and_then(|v| v.get(self.selected))
            .copied()
            .unwrap_or(f64::NAN)
    }

    /// The `n` experts with the highest selected score, highest first (experts without a
    /// score last).
    pub fn top(&self, n: usize) -> Vec<((usize, usize), f64)> {
        let mut all: Vec<((usize, usize), f64)> = self
            .order
            .iter()
            .map(|&(l, e)| ((l, e), self.score(l, e)))
            .collect();
        let key = |v: f64| if v.is_nan() { f64::NEG_INFINITY } else { v };
        all.sort_by(|a, b| key(b.1).total_cmp(&key(a.1)));
        all.truncate(n);
        all
    }

    /// Largest |score| of the selected column, for colour scales.
    pub fn max_abs(&self) -> f64 {
        self.values
            .keys()
            .map(|&(l, e)| self.score(l, e).abs())
            .filter(|x| x.is_finite())
            .fold(0.0, f64::max)
    }
}

/// Whether a column holds ranks (`rank`, `ablation_rank`, …): 1 is the best, so its numbers
/// run the other way from scores and do not colour the grid.
pub fn is_rank_column(name: &str) -> bool {
    name == "rank" || name.ends_with("_rank")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(table: Table, path: &std::path::Path) {
        let mut set = moescope_analysis::OutputSet::new();
        table.write_parquet(&mut set, path).unwrap();
        set.commit().unwrap();
    }

    #[test]
    fn loads_a_ranking_and_refuses_a_table_without_ids() {
        let dir = std::env::temp_dir().join(format!("moescope-gui-rank-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("r.parquet");
        save(
            Table::default()
                .with("layer", Column::Int(vec![0, 2]))
                .with("expert", Column::Int(vec![11, 5]))
                .with("delta_rank", Column::Int(vec![2, 1]))
                .with("delta", Column::Float(vec![0.3, -0.5]))
                .with("n", Column::Int(vec![7, 9])),
            &good,
        );
        let r = Ranking::load(&good).unwrap();
        assert_eq!(r.columns, vec!["delta_rank", "delta", "n"]);
        // The rank column is neither offered nor chosen as a colour.
        assert_eq!(r.score_columns(), vec![1, 2]);
        assert_eq!(r.selected, 1);
        assert_eq!(r.score(2, 5), -0.5);
        assert!(r.score(1, 1).is_nan());
        assert_eq!(r.top(1), vec![((0, 11), 0.3)]);
        let mut by_n = r.clone();
        by_n.selected = 2;
        assert_eq!(by_n.top(2), vec![((2, 5), 9.0), ((0, 11), 7.0)]);
        assert_eq!(r.max_abs(), 0.5);
        let bad = dir.join("b.parquet");
        save(
            Table::default().with("score", Column::Float(vec![1.0])),
            &bad,
        );
        let err = Ranking::load(&bad).unwrap_err().to_string();
        assert!(
            err.contains("b.parquet") && err.contains("`layer`"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
