//! Memory-mapped safetensors checkpoints, single-file or sharded, with every tensor checked
//! for presence, shape and dtype as it is loaded.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use safetensors::tensor::{Dtype as StDtype, Metadata};
use serde_json::Value;

use crate::config::read_json;
use crate::error::{EngineError, Result};
use crate::host_buffer::tensor_from_parts;
use crate::kernels::{self, MXFP4_BLOCK};
use crate::matrix::Matrix;

/// One mapped shard and its parsed header.
struct Shard {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
    metadata: Metadata,
}

/// All tensors of a checkpoint folder, looked up by name across shards.
pub struct Weights {
    shards: Vec<Shard>,
    index: HashMap<String, usize>,
    /// Where names are looked up, for error messages (the index file or the single file).
    source: PathBuf,
    device: Device,
    dtype: DType,
    /// Rows × columns of one FP8 scale block (`quantization_config.weight_block_size`).
    fp8_block: Option<(usize, usize)>,
}

/// The per-dtype count of weight values in a checkpoint.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DtypeCounts(pub Vec<(String, usize)>);

impl Weights {
    /// Opens `model.safetensors`, or the shards listed in `model.safetensors.index.json`;
    /// tensors are loaded onto `device` as `dtype` (the compute dtype).
    pub fn open(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let (files, source) = if index_path.exists() {
            (shard_files(&index_path, dir)?, index_path)
        } else if single.exists() {
            (vec![single.clone()], single)
        } else {
            return Err(EngineError::MissingFile {
                path: single,
                what: "model weights (model.safetensors or model.safetensors.index.json)",
            });
        };
        let mut shards = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        for path in files {
            let shard = map_shard(&path)?;
            for name in shard.metadata.tensors().keys() {
                index.insert(name.clone(), shards.len());
            }
            shards.push(shard);
        }
        Ok(Self {
            shards,
            index,
            source,
            device: device.clone(),
            dtype,
            fp8_block: None,
        })
    }

    /// Sets the FP8 block shape of the checkpoint's `quantization_config` (FP8 tensors are
    /// refused without it).
    pub fn with_fp8_block(mut self, block: Option<(usize, usize)>) -> Self {
        self.fp8_block = block;
        self
    }

    /// The device tensors are loaded onto.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype tensors are loaded as.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Loads tensor `name`, checks it has `shape`, and converts it to the compute dtype on the
    /// device.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let (shard, info) = self.info(name, shape)?;
        let dtype = float_dtype(shard, name, info)?;
        let tensor = tensor_from_parts(&[shard.bytes(info)], dtype, shape, name)?;
        Ok(tensor.to_dtype(self.dtype)?.to_device(&self.device)?)
    }

    /// Loads the projection weight `name` (`{module}.weight`, `[out, in]`) as a [`Matrix`]: FP8
    /// e4m3 values stay compressed with their `{module}.weight_scale_inv` block scales (on the
    /// cpu; other devices get them dequantised to the compute dtype); any other dtype as
    /// [`Weights::get`].
    pub fn get_matrix(&self, name: &str, shape: &[usize]) -> Result<Matrix> {
        let (_, info) = self.info(name, shape)?;
        if info.dtype == StDtype::F8_E4M3 {
            self.get_fp8(&[name.to_string()], shape, false)
        } else {
            Ok(Matrix::Dense(self.get(name, shape)?))
        }
    }

    /// [`Weights::get_stacked`] for projection weights, FP8 ones kept compressed as in
    /// [`Weights::get_matrix`].
    pub fn get_stacked_matrix(&self, names: &[String], shape: &[usize]) -> Result<Matrix> {
        match names.first() {
            Some(first) if self.info(first, shape)?.1.dtype == StDtype::F8_E4M3 => {
                self.get_fp8(names, shape, true)
            }
            _ => Ok(Matrix::Dense(self.get_stacked(names, shape)?)),
        }
    }

    /// FP8 weights `names` (each `[m, k]`), with their block scales expanded to one per row and
    /// block of columns; stacked along a new first axis when `stacked`.
    fn get_fp8(&self, names: &[String], shape: &[usize], stacked: bool) -> Result<Matrix> {
        let &[m, k] = shape else {
            return Err(EngineError::InvalidInput(format!(
                "FP8 weights must be matrices; {} is {shape:?}",
                names.join(", ")
            )));
        };
        let (first_shard, _) = self.info(&names[0], shape)?;
        let Some((block_rows, block_cols)) = self.fp8_block else {
            return Err(EngineError::BadConfig {
                path: first_shard.path.with_file_name("config.json"),
                field: "quantization_config".into(),
                message: format!(
                    "{} is stored as F8_E4M3, but config.json has no FP8 quantization_config \
                     (quant_method \"fp8\" with weight_block_size)",
                    names[0]
                ),
            });
        };
        let (row_blocks, col_blocks) = (m.div_ceil(block_rows), k.div_ceil(block_cols));
        let mut values = Vec::with_capacity(names.len());
        let mut scales = Vec::with_capacity(names.len() * m * col_blocks);
        for name in names {
            let (shard, info) = self.info(name, shape)?;
            if info.dtype != StDtype::F8_E4M3 {
                return Err(EngineError::WrongDtype {
                    path: shard.path.clone(),
                    name: name.clone(),
                    dtype: format!(
                        "{:?} (the tensors it is stacked with are F8_E4M3)",
                        info.dtype
                    ),
                });
            }
            let bytes = shard.bytes(info);
            if let Some(at) = bytes.iter().position(|&b| kernels::e4m3_is_nan(b)) {
                return Err(EngineError::InvalidInput(format!(
                    "{}: tensor {name} holds an FP8 NaN at row {}, column {}; the checkpoint is damaged",
                    shard.path.display(),
                    at / k,
                    at % k
                )));
            }
            values.push(bytes);
            let scale_name = format!("{}_scale_inv", name);
            let block_scales = self.get(&scale_name, &[row_blocks, col_blocks]).map_err(|e| match e {
                EngineError::WrongShape { path, name, found, .. } => EngineError::InvalidInput(format!(
                    "{}: {name} is {found:?}, but {m}×{k} weights in blocks of {block_rows}×{block_cols} \
                     need [{row_blocks}, {col_blocks}] scales (quantization_config.weight_block_size)",
                    path.display()
                )),
                other => other,
            })?;
            let block_scales: Vec<f32> = block_scales
                .to_dtype(DType::F32)?
                .to_device(&Device::Cpu)?
                .flatten_all()?
                .to_vec1()?;
            if let Some(bad) = block_scales.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
                return Err(EngineError::InvalidInput(format!(
                    "{}: tensor {scale_name} holds the scale {bad}; scales must be finite and not negative",
                    shard.path.display()
                )));
            }
            for j in 0..m {
                let row = &block_scales[j / block_rows * col_blocks..][..col_blocks];
                scales.extend_from_slice(row);
            }
        }
        let lead: Vec<usize> = if stacked {
            vec![names.len()]
        } else {
            Vec::new()
        };
        let dims = |last: usize| -> Vec<usize> { lead.iter().copied().chain([m, last]).collect() };
        let matrix = Matrix::Fp8 {
            values: tensor_from_parts(&values, DType::U8, &dims(k), &names[0])?,
            scales: Tensor::from_vec(scales, dims(col_blocks), &Device::Cpu)?,
            block: block_cols,
        };
        if self.device.is_cpu() {
            Ok(matrix)
        } else {
            // No FP8 kernel on other devices yet: dequantised once, at load.
            Ok(Matrix::Dense(
                matrix.dense(self.dtype)?.to_device(&self.device)?,
            ))
        }
    }

    /// Loads the tensors `names`, each of shape `shape` and all of one dtype, stacked along a
    /// new first axis (`[names.len(), shape…]`) in the compute dtype: the experts of a layer
    /// stored one tensor per expert become one tensor, as grouped kernels want them.
    pub fn get_stacked(&self, names: &[String], shape: &[usize]) -> Result<Tensor> {
        let mut parts = Vec::with_capacity(names.len());
        let mut dtype = None;
        for name in names {
            let (shard, info) = self.info(name, shape)?;
            let d = float_dtype(shard, name, info)?;
            if *dtype.get_or_insert(d) != d {
                return Err(EngineError::WrongDtype {
                    path: shard.path.clone(),
                    name: name.clone(),
                    dtype: format!("{d:?} (the other tensors it is stacked with are {dtype:?})"),
                });
            }
            parts.push(shard.bytes(info));
        }
        let full: Vec<usize> = std::iter::once(names.len())
            .chain(shape.iter().copied())
            .collect();
        let dtype = dtype.unwrap_or(self.dtype);
        let what = names.first().map_or("stacked tensors", String::as_str);
        let tensor = tensor_from_parts(&parts, dtype, &full, what)?;
        Ok(tensor.to_dtype(self.dtype)?.to_device(&self.device)?)
    }

    /// Loads an MXFP4-quantised `[experts, rows, cols]` matrix stored as `{name}_blocks`
    /// (`[experts, rows, cols/32, 16]` bytes, two 4-bit e2m1 values each, low nibble first) and
    /// `{name}_scales` (`[experts, rows, cols/32]` biased power-of-two exponents): kept
    /// compressed on the cpu, dequantised to the compute dtype on other devices.
    pub fn get_mxfp4(&self, name: &str, shape: [usize; 3]) -> Result<Matrix> {
        let [e, rows, cols] = shape;
        let groups = cols / MXFP4_BLOCK;
        let blocks_name = format!("{name}_blocks");
        let scales_name = format!("{name}_scales");
        let (bshard, binfo) = self.info(&blocks_name, &[e, rows, groups, 16])?;
        let (sshard, sinfo) = self.info(&scales_name, &[e, rows, groups])?;
        for (shard, info, n) in [(bshard, binfo, &blocks_name), (sshard, sinfo, &scales_name)] {
            if info.dtype != StDtype::U8 {
                return Err(EngineError::WrongDtype {
                    path: shard.path.clone(),
                    name: n.clone(),
                    dtype: format!("{:?} (MXFP4 blocks and scales are U8)", info.dtype),
                });
            }
        }
        let (blocks, scales) = (bshard.bytes(binfo), sshard.bytes(sinfo));
        if let Some(at) = scales.iter().position(|&s| s == 0xFF) {
            return Err(EngineError::InvalidInput(format!(
                "{}: tensor {scales_name} holds the NaN scale 255 at {at}; the checkpoint is damaged",
                sshard.path.display()
            )));
        }
        let matrix = Matrix::Mxfp4 {
            blocks: tensor_from_parts(&[blocks], DType::U8, &[e, rows, groups, 16], &blocks_name)?,
            scales: Tensor::from_vec(scales.to_vec(), (e, rows, groups), &Device::Cpu)?,
        };
        if self.device.is_cpu() {
            Ok(matrix)
        } else {
            // No MXFP4 kernel on other devices yet: dequantised once, at load.
            Ok(Matrix::Dense(
                matrix.dense(self.dtype)?.to_device(&self.device)?,
            ))
        }
    }

    /// The shard and header entry of tensor `name`, checked to have `shape`.
    fn info(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Result<(&Shard, &safetensors::tensor::TensorInfo)> {
        let shard_idx = *self
            .index
            .get(name)
            .ok_or_else(|| EngineError::MissingTensor {
                name: name.to_string(),
                path: self.source.clone(),
            })?;
        let shard = &self.shards[shard_idx];
        let info = shard
            .metadata
            .info(name)
            .ok_or_else(|| EngineError::MissingTensor {
                name: name.to_string(),
                path: shard.path.clone(),
            })?;
        if info.shape != shape {
            return Err(EngineError::WrongShape {
                path: shard.path.clone(),
                name: name.to_string(),
                found: info.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        Ok((shard, info))
    }

    /// Number of model parameters: every stored value, with each MXFP4 block byte counted as
    /// the two weights it packs and MXFP4 scales not counted.
    pub fn num_params(&self) -> usize {
        self.tensors()
            .map(|(name, info)| param_count(&name, info))
            .sum()
    }

    /// Parameters of the routed experts (tensors under `.experts.`), which a token uses only
    /// `top_k / num_experts` of.
    pub fn routed_expert_params(&self) -> usize {
        self.tensors()
            .filter(|(name, _)| name.contains(".experts."))
            .map(|(name, info)| param_count(&name, info))
            .sum()
    }

    /// Bytes the weights take once loaded in `dtype`: float tensors as stored when `dtype` is
    /// their stored dtype, else converted; FP8 and MXFP4 weights kept compressed.
    pub fn loaded_bytes(&self, dtype: DType) -> u64 {
        self.tensors()
            .map(|(name, info)| {
                let values = param_count(&name, info) as u64;
                if info.dtype == StDtype::U8 {
                    // MXFP4 blocks and scales, kept as stored.
                    (info.data_offsets.1 - info.data_offsets.0) as u64
                } else if info.dtype == StDtype::F8_E4M3 {
                    // Kept compressed: a byte a value and an f32 scale per row and block.
                    let blocks = self.fp8_block.map_or(128, |b| b.1) as u64;
                    values + values.div_ceil(blocks) * 4
                } else {
                    values * dtype.size_in_bytes() as u64
                }
            })
            .sum()
    }

    /// The float dtype that holds most of the stored values (what transformers' `dtype="auto"`
    /// loads), or `None` when no tensor is f32, bf16 or f16.
    pub fn stored_dtype(&self) -> Option<DType> {
        let mut counts = [(DType::F32, 0usize), (DType::BF16, 0), (DType::F16, 0)];
        for (_, info) in self.tensors() {
            let slot = match info.dtype {
                StDtype::F32 => 0,
                StDtype::BF16 => 1,
                StDtype::F16 => 2,
                _ => continue,
            };
            counts[slot].1 += info.shape.iter().product::<usize>();
        }
        counts
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .max_by_key(|&(_, n)| n)
            .map(|(d, _)| d)
    }

    /// Number of values stored per dtype, over every tensor.
    pub fn dtype_counts(&self) -> DtypeCounts {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for (_, info) in self.tensors() {
            *counts.entry(format!("{:?}", info.dtype)).or_default() +=
                info.shape.iter().product::<usize>();
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort();
        DtypeCounts(v)
    }

    /// Bytes of tensor data in the safetensors files.
    pub fn stored_bytes(&self) -> u64 {
        self.tensors()
            .map(|(_, info)| (info.data_offsets.1 - info.data_offsets.0) as u64)
            .sum()
    }

    /// Every tensor's name and header entry, across shards.
    fn tensors(&self) -> impl Iterator<Item = (String, &safetensors::tensor::TensorInfo)> {
        self.shards.iter().flat_map(|s| s.metadata.tensors())
    }
}

/// The candle dtype of a float tensor; other stored dtypes are an error naming the tensor.
fn float_dtype(shard: &Shard, name: &str, info: &safetensors::tensor::TensorInfo) -> Result<DType> {
    match info.dtype {
        StDtype::F32 => Ok(DType::F32),
        StDtype::BF16 => Ok(DType::BF16),
        StDtype::F16 => Ok(DType::F16),
        other => Err(EngineError::WrongDtype {
            path: shard.path.clone(),
            name: name.to_string(),
            dtype: format!("{other:?}"),
        }),
    }
}

/// Parameters one stored tensor holds: its values, two per MXFP4 block byte, none for MXFP4
/// and FP8 scales.
fn param_count(name: &str, info: &safetensors::tensor::TensorInfo) -> usize {
    let values: usize = info.shape.iter().product();
    let mxfp4 = info.dtype == StDtype::U8;
    match () {
        _ if mxfp4 && name.ends_with("_blocks") => 2 * values,
        _ if mxfp4 && name.ends_with("_scales") => 0,
        _ if name.ends_with("_scale_inv") => 0,
        _ => values,
    }
}

impl Shard {
    /// The stored bytes of one tensor.
    fn bytes(&self, info: &safetensors::tensor::TensorInfo) -> &[u8] {
        let (start, end) = info.data_offsets;
        &self.mmap[self.data_start + start..self.data_start + end]
    }
}

/// Reads the shard file list from `model.safetensors.index.json`.
fn shard_files(index_path: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let value = read_json(index_path)?;
    let map = value
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| EngineError::BadConfig {
            path: index_path.to_path_buf(),
            field: "weight_map".into(),
            message: "missing or not an object of tensor name → shard file".into(),
        })?;
    let mut files: Vec<String> = Vec::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| EngineError::BadConfig {
            path: index_path.to_path_buf(),
            field: format!("weight_map.{tensor}"),
            message: "expected a shard file name".into(),
        })?;
        if file.contains('/') || file.contains("..") {
            return Err(EngineError::BadConfig {
                path: index_path.to_path_buf(),
                field: format!("weight_map.{tensor}"),
                message: format!("shard `{file}` must be a plain file name in the same folder"),
            });
        }
        if !files.iter().any(|f| f == file) {
            files.push(file.to_string());
        }
    }
    files.sort();
    Ok(files
        .into_iter()
        .map(|f| dir.join(f))
        .collect::<Vec<PathBuf>>())
}

/// Maps one safetensors file and validates its header against its length.
fn map_shard(path: &Path) -> Result<Shard> {
    let file = File::open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            EngineError::MissingFile {
                path: path.to_path_buf(),
                what: "weight shard named in the index",
            }
        } else {
            EngineError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    // SAFETY: the file is opened read-only and the map is only read; a checkpoint changed on
    // disk while loaded is outside what the engine can guard against, as with any mmap loader.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&mmap).map_err(|e| {
        EngineError::CorruptSafetensors {
            path: path.to_path_buf(),
            message: format!("{e:?} (the header is damaged or the file is truncated)"),
        }
    })?;
    let data_start = 8 + header_len;
    let data_len = mmap.len() - data_start;
    for (name, info) in metadata.tensors() {
        if info.data_offsets.1 > data_len {
            return Err(EngineError::CorruptSafetensors {
                path: path.to_path_buf(),
                message: format!("tensor `{name}` runs past the end of the file (truncated?)"),
            });
        }
    }
    Ok(Shard {
        path: path.to_path_buf(),
        mmap,
        data_start,
        metadata,
    })
}
