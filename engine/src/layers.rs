//! The small building blocks every architecture shares: linear maps, RMSNorm and the SwiGLU
//! MLP used by dense layers, routed experts and shared experts alike.

use candle_core::{Tensor, D};

use crate::config::GluActivation;
use crate::error::Result;
use crate::matrix::Matrix;
use crate::weights::Weights;

/// `y = x Wᵀ (+ b)` for `x` of shape `[n, in]`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Matrix,
    bias: Option<Tensor>,
}

impl Linear {
    /// Loads `{name}.weight` of shape `[out, in]` and, when `bias`, `{name}.bias`.
    pub fn load(
        w: &Weights,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Self> {
        let weight = w.get_matrix(&format!("{name}.weight"), &[out_dim, in_dim])?;
        let bias = if bias {
            Some(w.get(&format!("{name}.bias"), &[out_dim])?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// Wraps an already-loaded `[out, in]` weight.
    pub fn from_weight(weight: Tensor) -> Self {
        Self {
            weight: Matrix::Dense(weight),
            bias: None,
        }
    }

    /// Applies the map to `x` of shape `[n, in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.weight.apply(x)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// Root-mean-square normalisation over the last dimension with a learned scale.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    /// Loads `{name}.weight` of shape `[dim]`.
    pub fn load(w: &Weights, name: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.get(&format!("{name}.weight"), &[dim])?,
            eps: eps as f32,
        })
    }

    /// Normalises `x` over its last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        if x.track_op() {
            // Differentiable path, taken only while computing gradients.
            return Ok(candle_nn::ops::rms_norm_slow(&x, &self.weight, self.eps)?);
        }
        Ok(candle_nn::ops::rms_norm(&x, &self.weight, self.eps)?)
    }
}

/// A gated MLP, `down(act(gate(x), up(x)))`, with gate and up fused into one matmul and
/// optional biases.
#[derive(Debug, Clone)]
pub struct SwiGlu {
    gate_up: Matrix,
    gate_up_bias: Option<Tensor>,
    down: Matrix,
    down_bias: Option<Tensor>,
    intermediate: usize,
    activation: GluActivation,
}

impl SwiGlu {
    /// Builds the MLP from its three `[out, in]` matrices.
    pub fn new(gate: &Matrix, up: &Matrix, down: Matrix) -> Result<Self> {
        Self::from_fused(Matrix::cat_rows(&[gate, up])?, down)
    }

    /// Builds the MLP from a fused `[2·intermediate, hidden]` gate-then-up matrix.
    pub fn from_fused(gate_up: Matrix, down: Matrix) -> Result<Self> {
        let intermediate = gate_up.dims().first().copied().unwrap_or(0) / 2;
        Ok(Self {
            gate_up,
            gate_up_bias: None,
            down,
            down_bias: None,
            intermediate,
            activation: GluActivation::Silu,
        })
    }

    /// Adds biases (`[2·intermediate]` gate-then-up, `[hidden]`) and sets the activation.
    pub fn with_biases(
        mut self,
        gate_up: Option<Tensor>,
        down: Option<Tensor>,
        activation: GluActivation,
    ) -> Self {
        self.gate_up_bias = gate_up;
        self.down_bias = down;
        self.activation = activation;
        self
    }

    /// Loads `{name}.{gate,up,down}` with the checkpoint's own projection names.
    pub fn load(
        w: &Weights,
        name: &str,
        names: [&str; 3],
        hidden: usize,
        inter: usize,
    ) -> Result<Self> {
        let [g, u, d] = names;
        let gate = w.get_matrix(&format!("{name}.{g}.weight"), &[inter, hidden])?;
        let up = w.get_matrix(&format!("{name}.{u}.weight"), &[inter, hidden])?;
        let down = w.get_matrix(&format!("{name}.{d}.weight"), &[hidden, inter])?;
        Self::new(&gate, &up, down)
    }

    /// Applies the MLP to `x` of shape `[n, hidden]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut gu = self.gate_up.apply(x)?;
        if let Some(b) = &self.gate_up_bias {
            gu = gu.broadcast_add(b)?;
        }
        let gate = gu.narrow(D::Minus1, 0, self.intermediate)?;
        let up = gu.narrow(D::Minus1, self.intermediate, self.intermediate)?;
        let h = match self.activation {
            GluActivation::Silu => (gate.silu()? * up)?,
            GluActivation::ClampedSwiGlu { alpha, limit } => {
                let gate = gate.minimum(limit)?;
                let up = up.clamp(-limit, limit)?;
                let glu = (&gate * candle_nn::ops::sigmoid(&(&gate * f64::from(alpha))?)?)?;
                ((up + 1.0)? * glu)?
            }
        };
        let y = self.down.apply(&h)?;
        Ok(match &self.down_bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// Number of weight values.
    pub fn num_params(&self) -> usize {
        let biases = [self.gate_up_bias.as_ref(), self.down_bias.as_ref()];
        self.gate_up.elem_count()
            + self.down.elem_count()
            + biases
                .into_iter()
                .flatten()
                .map(Tensor::elem_count)
                .sum::<usize>()
    }
}
