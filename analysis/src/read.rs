//! Reading Parquet files as Arrow batches: in one thread, or with row groups decoded on worker
//! threads (decompression and decoding dominate a scan) while the caller consumes them in file
//! order. Each worker holds at most a few batches, so memory stays bounded.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;

use crate::error::{AnalysisError, Result};
/// Version of the records format written and read by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// Batches of a file, in file order.
pub type BatchIter = Box<dyn Iterator<Item = Result<RecordBatch>>>;

/// Batches decoded ahead per worker.
const AHEAD: usize = 2;

/// A reader of `columns` (all when `None`) of the given row groups (all when `None`).
fn reader(
    path: &Path,
    columns: Option<&[&str]>,
    batch_rows: usize,
    row_groups: Option<Vec<usize>>,
) -> Result<ParquetRecordBatchReader> {
    let file = File::open(path).map_err(|e| AnalysisError::Io {
        path: path.to_path_buf(),
        error: e,
    })?;
    let err = |e: parquet::errors::ParquetError| {
        AnalysisError::records(path, format!("not a readable Parquet file: {e}"))
    };
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file.try_clone().map_err(|e| {
        AnalysisError::Io {
            path: path.to_path_buf(),
            error: e,
        }
    })?)
    .map_err(err)?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    check_column_chunks(builder.metadata(), file_len, path)?;
    if let Some(schema) = dictionary_hint(builder.schema()) {
        let options = ArrowReaderOptions::new().with_schema(schema);
        builder =
            ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).map_err(err)?;
    }
    if let Some(columns) = columns {
        let schema = builder.parquet_schema();
        let mut indices = Vec::new();
        for name in columns {
            let i = (0..schema.num_columns())
                .find(|&i| schema.column(i).name() == *name)
                .ok_or_else(|| {
                    AnalysisError::records(
                        path,
                        format!("no column `{name}` (records schema v{SCHEMA_VERSION} expected)"),
                    )
                })?;
            indices.push(i);
        }
        let mask = ProjectionMask::leaves(schema, indices);
        builder = builder.with_projection(mask);
    }
    if let Some(groups) = row_groups {
        builder = builder.with_row_groups(groups);
    }
    builder.with_batch_size(batch_rows).build().map_err(err)
}

/// String columns with few distinct values, read as dictionaries: each distinct value is
/// decoded once instead of copied into every row (a fifth of a token-text scan otherwise).
const DICTIONARY_COLUMNS: [&str; 1] = ["token_text"];

/// The file's schema with its [`DICTIONARY_COLUMNS`] read as dictionaries, if it has any.
fn dictionary_hint(schema: &SchemaRef) -> Option<SchemaRef> {
    let wanted = |f: &Field| {
        DICTIONARY_COLUMNS.contains(&f.name().as_str()) && f.data_type() == &DataType::Utf8
    };
    if !schema.fields().iter().any(|f| wanted(f)) {
        return None;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let f = f.as_ref().clone();
            if wanted(&f) {
                let dict =
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                f.with_data_type(dict)
            } else {
                f
            }
        })
        .collect();
    Some(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

/// Every batch of `path` (only `columns` when given), decoded on the calling thread.
pub fn read_batches(path: &Path, columns: Option<&[&str]>, batch_rows: usize) -> Result<BatchIter> {
    Ok(naming_errors(
        reader(path, columns, batch_rows, None)?,
        path,
    ))
}

/// The reader's batches, with errors that name `path`.
fn naming_errors(r: ParquetRecordBatchReader, path: &Path) -> BatchIter {
    let path = path.to_path_buf();
    Box::new(r.map(move |b| b.map_err(|e| AnalysisError::records(&path, e))))
}

/// Every batch of `path`'s `columns` in file order, row groups decoded on up to as many worker
/// threads as the machine has cores (one reader when the file has a single row group).
pub fn read_batches_parallel(
    path: &Path,
    columns: &[&str],
    batch_rows: usize,
) -> Result<BatchIter> {
    let groups = reader(path, Some(columns), batch_rows, Some(Vec::new()))
        .and_then(|_| row_group_count(path))?;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(groups);
    if workers <= 1 {
        return read_batches(path, Some(columns), batch_rows);
    }
    let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    let mut receivers = Vec::with_capacity(workers);
    for w in 0..workers {
        let (tx, rx) = sync_channel::<Option<Result<RecordBatch>>>(AHEAD);
        let (path, columns) = (path.to_path_buf(), columns.clone());
        std::thread::spawn(move || {
            let names: Vec<&str> = columns.iter().map(String::as_str).collect();
            for g in (w..groups).step_by(workers) {
                let batches = match read_row_group(&path, &names, batch_rows, g) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Some(Err(e)));
                        return;
                    }
                };
                for b in batches {
                    if tx.send(Some(b)).is_err() {
                        return; // the consumer stopped
                    }
                }
                if tx.send(None).is_err() {
                    return;
                }
            }
        });
        receivers.push(rx);
    }
    Ok(Box::new(InOrder {
        receivers,
        group: 0,
        groups,
        path: path.to_path_buf(),
    }))
}

/// Every batch of one row group of `path` (only `columns`), decoded on the calling thread.
pub fn read_row_group(
    path: &Path,
    columns: &[&str],
    batch_rows: usize,
    group: usize,
) -> Result<BatchIter> {
    let r = reader(path, Some(columns), batch_rows, Some(vec![group]))?;
    Ok(naming_errors(r, path))
}

/// Fails when a column chunk of the footer points outside the file (a corrupted or cut file):
/// the Parquet reader would otherwise panic on a negative offset or read past the end.
fn check_column_chunks(
    meta: &parquet::file::metadata::ParquetMetaData,
    file_len: u64,
    path: &Path,
) -> Result<()> {
    for (g, group) in meta.row_groups().iter().enumerate() {
        for column in group.columns() {
            let start = column
                .dictionary_page_offset()
                .unwrap_or_else(|| column.data_page_offset());
            let len = column.compressed_size();
            let inside = start >= 0
                && len >= 0
                && (start as u64)
                    .checked_add(len as u64)
                    .is_some_and(|end| end <= file_len);
            if !inside {
                return Err(AnalysisError::records(
                    path,
                    format!(
                        "not a readable Parquet file: column `{}` of row group {g} lies outside the file (offset {start}, length {len}, file {file_len} bytes); the file is damaged",
                        column.column_path()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// How many row groups `path` has.
pub fn row_group_count(path: &Path) -> Result<usize> {
    let file = File::open(path).map_err(|e| AnalysisError::Io {
        path: path.to_path_buf(),
        error: e,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| AnalysisError::records(path, format!("not a readable Parquet file: {e}")))?;
    Ok(builder.metadata().num_row_groups())
}

/// Reassembles the workers' row groups in file order: group g comes from worker g % workers,
/// whose batches for it end with `None`.
struct InOrder {
    receivers: Vec<Receiver<Option<Result<RecordBatch>>>>,
    group: usize,
    groups: usize,
    path: PathBuf,
}

impl Iterator for InOrder {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.group < self.groups {
            let rx = &self.receivers[self.group % self.receivers.len()];
            match rx.recv() {
                Ok(Some(batch)) => return Some(batch),
                Ok(None) => self.group += 1,
                Err(_) => {
                    self.group = self.groups;
                    return Some(Err(AnalysisError::records(
                        &self.path,
                        "a reader thread stopped before the end of the file",
                    )));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Array, UInt32Array};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::*;
    use crate::stats::testdata::temp_dir;

    #[test]
    fn parallel_reading_keeps_file_order_across_row_groups() {
        let dir = temp_dir("read");
        let path = dir.0.join("t.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::UInt32, false),
            Field::new("b", DataType::UInt32, false),
        ]));
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(7))
            .build();
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema.clone(), Some(props))
            .unwrap();
        for chunk in 0..10u32 {
            let a: Vec<u32> = (chunk * 10..chunk * 10 + 10).collect();
            let b: Vec<u32> = a.iter().map(|x| x * 2).collect();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(UInt32Array::from(a)),
                    Arc::new(UInt32Array::from(b)),
                ],
            )
            .unwrap();
            w.write(&batch).unwrap();
        }
        w.close().unwrap();
        assert!(row_group_count(&path).unwrap() > 10);
        let values = |it: BatchIter| -> Vec<u32> {
            it.flat_map(|b| {
                let b = b.unwrap();
                let a = b.column(0).as_any().downcast_ref::<UInt32Array>().unwrap();
                (0..a.len()).map(|i| a.value(i)).collect::<Vec<_>>()
            })
            .collect()
        };
        let parallel = values(read_batches_parallel(&path, &["a"], 3).unwrap());
        assert_eq!(parallel, (0..100).collect::<Vec<u32>>());
        assert_eq!(
            parallel,
            values(read_batches(&path, Some(&["a"]), 3).unwrap())
        );
        // A missing column is an error naming it, before any thread starts.
        let err = read_batches_parallel(&path, &["nope"], 3).err().unwrap();
        assert!(err.to_string().contains("no column `nope`"), "{err}");
    }
}
