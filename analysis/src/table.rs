//! Result tables of the statistics, and their exports: Parquet, CSV and Markdown, each written
//! under a temporary name and renamed, so a failed export never leaves half a file.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

use crate::error::{AnalysisError, Result};
use crate::output::OutputSet;

/// One column of a result table.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Counts and ids.
    Int(Vec<u64>),
    /// Rates, scores, p-values (NaN where undefined).
    Float(Vec<f64>),
    /// Labels.
    Text(Vec<String>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Int(v) => v.len(),
            Column::Float(v) => v.len(),
            Column::Text(v) => v.len(),
        }
    }

    fn cell(&self, i: usize) -> String {
        match self {
            Column::Int(v) => v[i].to_string(),
            Column::Float(v) => format_float(v[i]),
            Column::Text(v) => v[i].clone(),
        }
    }
}

fn format_float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x == 0.0 || (x.abs() >= 1e-3 && x.abs() < 1e6) {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}

/// A named table of equal-length columns, in ranking order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Columns in display order.
    pub columns: Vec<(String, Column)>,
}

impl Table {
    /// Adds a column (all columns must have the same length).
    pub fn with(mut self, name: &str, col: Column) -> Self {
        self.columns.push((name.to_string(), col));
        self
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.columns.first().map_or(0, |(_, c)| c.len())
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// A numeric column as floats.
    pub fn floats(&self, name: &str) -> Option<Vec<f64>> {
        match self.column(name)? {
            Column::Int(v) => Some(v.iter().map(|&x| x as f64).collect()),
            Column::Float(v) => Some(v.clone()),
            Column::Text(_) => None,
        }
    }

    /// The rows in this order (a permutation of row indices).
    pub fn reordered(&self, order: &[usize]) -> Self {
        let columns = self
            .columns
            .iter()
            .map(|(n, c)| {
                let c = match c {
                    Column::Int(v) => Column::Int(order.iter().map(|&i| v[i]).collect()),
                    Column::Float(v) => Column::Float(order.iter().map(|&i| v[i]).collect()),
                    Column::Text(v) => Column::Text(order.iter().map(|&i| v[i].clone()).collect()),
                };
                (n.clone(), c)
            })
            .collect();
        Self { columns }
    }

    /// Sorted by a numeric column, largest first (by absolute value when `by_abs`); NaN last.
    pub fn sorted_desc(&self, name: &str, by_abs: bool) -> Self {
        let Some(v) = self.floats(name) else {
            return self.clone();
        };
        let key = |i: usize| if by_abs { v[i].abs() } else { v[i] };
        let mut order: Vec<usize> = (0..self.num_rows()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (key(a), key(b));
            match (x.is_nan(), y.is_nan()) {
                (true, true) => a.cmp(&b),
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ => y.total_cmp(&x).then(a.cmp(&b)),
            }
        });
        self.reordered(&order)
    }

    /// Keeps the rows where `keep(i)` holds.
    pub fn filtered(&self, keep: impl Fn(usize) -> bool) -> Self {
        let order: Vec<usize> = (0..self.num_rows()).filter(|&i| keep(i)).collect();
        self.reordered(&order)
    }

    /// The table as CSV text.
    pub fn to_csv(&self) -> String {
        let mut s = String::new();
        let names: Vec<String> = self.columns.iter().map(|(n, _)| csv_field(n)).collect();
        s.push_str(&names.join(","));
        s.push('\n');
        for i in 0..self.num_rows() {
            let cells: Vec<String> = self
                .columns
                .iter()
                .map(|(_, c)| match c {
                    Column::Float(v) => v[i].to_string(),
                    other => csv_field(&other.cell(i)),
                })
                .collect();
            s.push_str(&cells.join(","));
            s.push('\n');
        }
        s
    }

    /// The first `max_rows` rows as a Markdown table.
    pub fn to_markdown(&self, max_rows: usize) -> String {
        let mut s = String::new();
        let names: Vec<&str> = self.columns.iter().map(|(n, _)| n.as_str()).collect();
        let _ = writeln!(s, "| {} |", names.join(" | "));
        let _ = writeln!(s, "|{}", " --- |".repeat(names.len()));
        for i in 0..self.num_rows().min(max_rows) {
            let cells: Vec<String> = self
                .columns
                .iter()
                .map(|(_, c)| c.cell(i).replace('|', "\\|").replace('\n', "\\n"))
                .collect();
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        }
        if self.num_rows() > max_rows {
            let _ = writeln!(s, "\n({} of {} rows shown)", max_rows, self.num_rows());
        }
        s
    }

    /// Reads a table written by [`Table::write_parquet`] (or any Parquet file of integer,
    /// float and string columns), so rankings can be loaded back, e.g. by the GUI.
    pub fn read_parquet(path: &Path) -> Result<Self> {
        let mut table = Table::default();
        for batch in crate::read::read_batches(path, None, 8192)? {
            let batch = batch?;
            let schema = batch.schema();
            if table.columns.is_empty() {
                for f in schema.fields() {
                    let col = match f.data_type() {
                        DataType::Utf8 | DataType::LargeUtf8 => Column::Text(Vec::new()),
                        DataType::Float32 | DataType::Float64 => Column::Float(Vec::new()),
                        _ => Column::Int(Vec::new()),
                    };
                    table.columns.push((f.name().clone(), col));
                }
            }
            for ((name, col), array) in table.columns.iter_mut().zip(batch.columns()) {
                append(col, array.as_ref())
                    .map_err(|m| AnalysisError::records(path, format!("column `{name}`: {m}")))?;
            }
        }
        Ok(table)
    }

    /// Writes the table as Parquet, as one file of `set` (in place once the set commits).
    pub fn write_parquet(&self, set: &mut OutputSet, path: &Path) -> Result<()> {
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (name, c) in &self.columns {
            let (dt, a): (DataType, ArrayRef) = match c {
                Column::Int(v) => (DataType::UInt64, Arc::new(UInt64Array::from(v.clone()))),
                Column::Float(v) => (DataType::Float64, Arc::new(Float64Array::from(v.clone()))),
                Column::Text(v) => (DataType::Utf8, Arc::new(StringArray::from(v.clone()))),
            };
            fields.push(Field::new(name, dt, false));
            arrays.push(a);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .map_err(|e| AnalysisError::records(path, e))?;
        // Encoded in memory (rankings are small), so a failing disk reads as a failed write.
        let mut bytes = Vec::new();
        let mut w = ArrowWriter::try_new(&mut bytes, batch.schema(), None)
            .map_err(|e| AnalysisError::records(path, e))?;
        w.write(&batch)
            .map_err(|e| AnalysisError::records(path, e))?;
        w.close().map_err(|e| AnalysisError::records(path, e))?;
        set.write(path, |tmp| {
            std::fs::write(tmp, &bytes).map_err(|e| AnalysisError::Write {
                path: path.to_path_buf(),
                error: e,
            })
        })
    }
}

/// Appends an Arrow array to a column of the matching kind; nulls read as NaN (floats) or are
/// refused (integers, where no value could stand for them).
fn append(col: &mut Column, a: &dyn Array) -> std::result::Result<(), String> {
    let non_null = |i: usize| -> std::result::Result<usize, String> {
        if a.is_null(i) {
            Err(format!("row {i} is null"))
        } else {
            Ok(i)
        }
    };
    match (col, a.data_type()) {
        (Column::Float(v), DataType::Float64) => v.extend((0..a.len()).map(|i| {
            if a.is_null(i) {
                f64::NAN
            } else {
                a.as_primitive::<Float64Type>().value(i)
            }
        })),
        (Column::Float(v), DataType::Float32) => v.extend((0..a.len()).map(|i| {
            if a.is_null(i) {
                f64::NAN
            } else {
                f64::from(a.as_primitive::<Float32Type>().value(i))
            }
        })),
        (Column::Text(v), DataType::Utf8) => {
            let s = a.as_string::<i32>();
            v.extend((0..a.len()).map(|i| s.value(i).to_string()));
        }
        (Column::Text(v), DataType::LargeUtf8) => {
            let s = a.as_string::<i64>();
            v.extend((0..a.len()).map(|i| s.value(i).to_string()));
        }
        (Column::Int(v), dt) => {
            for i in 0..a.len() {
                let i = non_null(i)?;
                let x: i128 = match dt {
                    DataType::UInt64 => a.as_primitive::<UInt64Type>().value(i).into(),
                    DataType::UInt32 => a.as_primitive::<UInt32Type>().value(i).into(),
                    DataType::Int64 => a.as_primitive::<Int64Type>().value(i).into(),
                    DataType::Int32 => a.as_primitive::<Int32Type>().value(i).into(),
                    other => return Err(format!("type {other} is not supported")),
                };
                v.push(u64::try_from(x).map_err(|_| format!("row {i} is negative ({x})"))?);
            }
        }
        (_, dt) => return Err(format!("type {dt} changed between row groups")),
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_round_trip_keeps_every_column() {
        let t = Table::default()
            .with("layer", Column::Int(vec![0, 3]))
            .with("score", Column::Float(vec![0.25, f64::NAN]))
            .with("name", Column::Text(vec!["x".into(), "y".into()]));
        let path =
            std::env::temp_dir().join(format!("moescope-table-{}.parquet", std::process::id()));
        let mut set = OutputSet::new();
        t.write_parquet(&mut set, &path).unwrap();
        set.commit().unwrap();
        let back = Table::read_parquet(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(back.column("layer"), t.column("layer"));
        assert_eq!(back.column("name"), t.column("name"));
        let f = back.floats("score").unwrap();
        assert_eq!(f[0], 0.25);
        assert!(f[1].is_nan());
        let missing = Table::read_parquet(Path::new("/nonexistent/ranking.parquet"));
        assert!(missing.unwrap_err().to_string().contains("ranking.parquet"));
    }

    #[test]
    fn sorting_filtering_and_text_exports() {
        let t = Table::default()
            .with(
                "name",
                Column::Text(vec!["a".into(), "b,c".into(), "d".into()]),
            )
            .with("score", Column::Float(vec![0.5, -2.0, f64::NAN]));
        let by_abs = t.sorted_desc("score", true);
        assert_eq!(
            by_abs.column("name"),
            Some(&Column::Text(vec!["b,c".into(), "a".into(), "d".into()]))
        );
        let signed = t.sorted_desc("score", false);
        assert_eq!(signed.floats("score").unwrap()[0], 0.5);
        assert_eq!(t.filtered(|i| i != 1).num_rows(), 2);
        let csv = t.to_csv();
        assert!(csv.starts_with("name,score\n"));
        assert!(csv.contains("\"b,c\",-2\n"));
        let md = t.to_markdown(2);
        assert!(md.contains("| a | 0.5000 |"));
        assert!(md.contains("(2 of 3 rows shown)"));
    }
}
