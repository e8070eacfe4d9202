//! The routing-records format (schema version 1): a folder of Parquet files that pandas,
//! polars, DuckDB and Spark read as they are.
//!
//! - `routing.parquet`: long format, one row per (sequence, position, layer, rank);
//! - `sequences.parquet`: one row per prompt (its id, rendered prompt, label, pair id, output);
//! - `run.parquet`: one row describing the run (model, config hash, interventions, version);
//! - `router_probs.parquet` (optional): one row per (sequence, position, layer) with the full
//!   router distribution in columns `p_0 … p_{E-1}`.
//!
//! Files are written under temporary names and renamed only when the run finishes, so an
//! interrupted run leaves complete files or none. Memory stays bounded: rows are flushed to
//! Parquet in batches as they come.

mod reader;
mod schema;
mod writer;

pub use crate::read::SCHEMA_VERSION;
pub use reader::{Records, RoutingBatch, Texts};
pub use schema::{
    existing_tables, routing_schema, RunInfo, SequenceInfo, TokenRouting, PROBS_FILE, ROUTING_FILE,
    RUN_FILE, SEQUENCES_FILE, TABLES,
};
pub use writer::RecordWriter;

/// The fuzz tests' text mutator and budget, shared with the workspace's integration tests.
#[cfg(test)]
#[path = "../../../tests/common/mutate.rs"]
#[allow(dead_code)] // Only its budget is used here; the records fuzz mutates bytes.
mod mutate;

#[cfg(test)]
mod tests {
    use super::mutate;
    use crate::stats::testdata::{temp_dir, tiny_records};
    use crate::stats::Positions;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use std::path::Path;

    use arrow_array::{Array, ArrayRef, Float32Array, RecordBatch};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
    use parquet::file::properties::WriterProperties;

    use crate::scan::{scan_choices, Needs};
    use crate::stats::freq::frequency;

    /// Rewrites a Parquet file with `compression`, passing its batches through `edit`, as
    /// pyarrow, polars or DuckDB would when a user saves a table again.
    fn rewrite(
        path: &Path,
        compression: Compression,
        edit: impl Fn(Vec<RecordBatch>) -> Vec<RecordBatch>,
    ) {
        let file = std::fs::File::open(path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let schema = batches[0].schema();
        let batches = edit(batches);
        let props = WriterProperties::builder()
            .set_compression(compression)
            .build();
        let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props))
            .unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
    }

    fn copy_records(from: &Path, tag: &str) -> crate::stats::testdata::TempDir {
        let dir = temp_dir(tag);
        for f in super::TABLES {
            std::fs::copy(from.join(f), dir.0.join(f)).unwrap();
        }
        dir
    }

    /// The codecs pyarrow, polars, DuckDB and Spark write by default or on request.
    #[test]
    fn records_written_by_other_tools_with_any_codec_are_read() {
        let (dir, rec) = tiny_records();
        let want = frequency(&rec, Positions::All).unwrap();
        for codec in [
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::GZIP(GzipLevel::default()),
            Compression::LZ4,
            Compression::LZ4_RAW,
            Compression::ZSTD(ZstdLevel::default()),
            Compression::BROTLI(BrotliLevel::default()),
        ] {
            let copy = copy_records(&dir.0, "codec");
            for f in super::TABLES {
                rewrite(&copy.0.join(f), codec, |b| b);
            }
            let rec = super::Records::open(&copy.0).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            let got = frequency(&rec, Positions::All).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(got.experts.to_csv(), want.experts.to_csv(), "{codec:?}");
        }
    }

    /// Tables that do not belong together, or NaN weights, fail every scan with a message
    /// naming the file and what is wrong, instead of giving statistics.
    #[test]
    fn inconsistent_or_non_finite_records_are_refused() {
        let (dir, _) = tiny_records();
        let scan = |d: &Path| -> String {
            let rec = super::Records::open(d).unwrap();
            let err = scan_choices(&rec, Needs::default(), |_| Ok(()))
                .unwrap_err()
                .to_string();
            let freq = frequency(&rec, Positions::All).unwrap_err().to_string();
            assert_eq!(err, freq);
            err
        };
        // sequences.parquet cut short: one sequence of two.
        let cut = copy_records(&dir.0, "cut");
        rewrite(
            &cut.0.join(super::SEQUENCES_FILE),
            Compression::SNAPPY,
            |b| vec![b[0].slice(0, 1)],
        );
        let msg = scan(&cut.0);
        assert!(
            msg.contains("routing.parquet") && msg.contains("do not belong together"),
            "{msg}"
        );
        // routing.parquet concatenated with itself.
        let twice = copy_records(&dir.0, "twice");
        rewrite(
            &twice.0.join(super::ROUTING_FILE),
            Compression::SNAPPY,
            |b| [b.clone(), b].concat(),
        );
        let msg = scan(&twice.0);
        assert!(
            msg.contains("holds 16 token routings") && msg.contains("accounts for 8"),
            "{msg}"
        );
        // A NaN weight.
        let nan = copy_records(&dir.0, "nan");
        rewrite(&nan.0.join(super::ROUTING_FILE), Compression::SNAPPY, |b| {
            b.into_iter()
                .map(|batch| {
                    let i = batch.schema().index_of("weight").unwrap();
                    let mut w: Vec<f32> = batch
                        .column(i)
                        .as_any()
                        .downcast_ref::<Float32Array>()
                        .unwrap()
                        .values()
                        .to_vec();
                    w[3] = f32::NAN;
                    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
                    cols[i] = std::sync::Arc::new(Float32Array::from(w));
                    RecordBatch::try_new(batch.schema(), cols).unwrap()
                })
                .collect()
        });
        let msg = scan(&nan.0);
        assert!(
            msg.contains("routing.parquet") && msg.contains("`weight`") && msg.contains("NaN"),
            "{msg}"
        );
    }

    /// A routing table whose footer gives a column chunk a negative offset (found by the long
    /// fuzz run, case 2542 of seed 5) is an error naming the damage; the Parquet reader alone
    /// panics on it.
    #[test]
    fn a_column_chunk_outside_the_file_is_an_error() {
        let (dir, _) = tiny_records();
        let copy = copy_records(&dir.0, "damaged");
        let damaged = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/routing-negative-column-offset.parquet");
        std::fs::copy(damaged, copy.0.join(super::ROUTING_FILE)).unwrap();
        let rec = super::Records::open(&copy.0).unwrap();
        let msg = frequency(&rec, Positions::All).unwrap_err().to_string();
        assert!(
            msg.contains("routing.parquet") && msg.contains("lies outside the file"),
            "{msg}"
        );
    }

    /// Randomly corrupted record files give errors, never panics.
    #[test]
    fn corrupted_files_are_errors_not_panics() {
        let (dir, _) = tiny_records();
        let mut rng = StdRng::seed_from_u64(5);
        for name in [super::ROUTING_FILE, super::RUN_FILE, super::SEQUENCES_FILE] {
            let good = std::fs::read(dir.0.join(name)).unwrap();
            let budget = mutate::Budget::part(150, 3);
            let mut cases = 0;
            for _ in (0..).take_while(|&r| budget.more(r)) {
                cases += 1;
                let bad = temp_dir("fuzz");
                for f in [super::ROUTING_FILE, super::RUN_FILE, super::SEQUENCES_FILE] {
                    std::fs::copy(dir.0.join(f), bad.0.join(f)).unwrap();
                }
                let mut bytes = good.clone();
                if rng.gen_bool(0.3) {
                    bytes.truncate(rng.gen_range(0..bytes.len()));
                } else {
                    for _ in 0..rng.gen_range(1..8) {
                        let i = rng.gen_range(0..bytes.len());
                        bytes[i] = rng.gen();
                    }
                }
                std::fs::write(bad.0.join(name), &bytes).unwrap();
                let read = std::panic::catch_unwind(|| {
                    if let Ok(rec) = super::Records::open(&bad.0) {
                        let _ = crate::stats::freq::frequency(&rec, Positions::All);
                    }
                });
                if read.is_err() {
                    let keep = std::env::temp_dir().join(format!("moescope-crash-{name}"));
                    std::fs::write(&keep, &bytes).unwrap();
                    panic!(
                        "{name} case {cases} panicked; the file is kept in {}",
                        keep.display()
                    );
                }
            }
            eprintln!("{name}: {cases} corrupted copies, none panicked");
        }
    }
}
