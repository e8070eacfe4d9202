//! Expert output gates: a multiplier of 1 on each routed expert's output that a backward pass
//! differentiates, for first-order attribution. Owned by neither the model nor the attribution
//! code, so both can use it without depending on each other.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};

use crate::config::ModelConfig;
use crate::error::Result;

/// A multiplicative gate of 1 on every routed expert's output at every MoE layer, as candle
/// variables, so a backward pass yields each expert's gate gradient.
pub struct ExpertGates {
    layers: BTreeMap<usize, Var>,
}

impl ExpertGates {
    /// Gates of 1 for every MoE layer of a model with config `c`, in its dtype and device.
    pub fn new(c: &ModelConfig, dtype: DType, device: &Device) -> Result<Self> {
        let mut layers = BTreeMap::new();
        for l in c.moe_layers() {
            let ones = Tensor::ones(c.moe.num_experts, dtype, device)?;
            layers.insert(l, Var::from_tensor(&ones)?);
        }
        Ok(Self { layers })
    }

    /// Each MoE layer's gate variable, by layer.
    pub fn vars(&self) -> impl Iterator<Item = (usize, &Var)> {
        self.layers.iter().map(|(&l, v)| (l, v))
    }

    /// The gate vector `[experts]` of `layer`, if it is an MoE layer.
    pub fn layer(&self, layer: usize) -> Option<&Tensor> {
        self.layers.get(&layer).map(|v| v.as_tensor())
    }
}
