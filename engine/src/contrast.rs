//! Self-contrast decoding: next-token scores from the model's own routing contrasted with a
//! weaker routing of the same model, `(1 + β)·log p_strong − β·log p_weak`, over the tokens the
//! strong distribution finds plausible (`p_strong ≥ α · max p_strong`).

use crate::config::ModelConfig;
use crate::logprob::log_softmax;
use crate::policy::{RoutingPolicy, Scope};

/// The weak routing and the two constants of self-contrast decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfContrast {
    /// The routing of the weak (amateur) pass, e.g. top-1 at every MoE layer.
    pub weak: RoutingPolicy,
    /// How strongly the weak distribution is subtracted.
    pub beta: f32,
    /// Plausibility threshold relative to the strong distribution's best token.
    pub alpha: f32,
}

impl SelfContrast {
    /// Contrast against the same model routed to `k` experts per token at every MoE layer.
    pub fn weak_top_k(config: &ModelConfig, k: usize, beta: f32, alpha: f32) -> Self {
        let mut weak = RoutingPolicy::new();
        for layer in config.moe_layers() {
            weak.top_k(layer, k, Scope::Both);
        }
        Self { weak, beta, alpha }
    }

    /// Checks β ≥ 0 and 0 < α ≤ 1.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return Err(format!("beta {} must be ≥ 0", self.beta));
        }
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(format!("alpha {} must be in (0, 1]", self.alpha));
        }
        Ok(())
    }

    /// Contrast scores for one row of strong and weak logits; implausible tokens get −∞.
    pub fn combine(&self, strong: &[f32], weak: &[f32]) -> Vec<f32> {
        let ls = log_softmax(strong);
        let lw = log_softmax(weak);
        let best = ls.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let floor = best + self.alpha.ln();
        ls.iter()
            .zip(&lw)
            .map(|(&s, &w)| {
                if s >= floor {
                    (1.0 + self.beta) * s - self.beta * w
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_by_hand() {
        // Strong probabilities 0.5, 0.3, 0.2; weak 0.7, 0.1, 0.2; β = 1, α = 0.5: token 2
        // (0.2 < 0.25) is implausible; scores 2·ln 0.5 − ln 0.7 and 2·ln 0.3 − ln 0.1.
        let c = SelfContrast {
            weak: RoutingPolicy::new(),
            beta: 1.0,
            alpha: 0.5,
        };
        let strong: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
        let weak: Vec<f32> = [0.7f32, 0.1, 0.2].iter().map(|p| p.ln()).collect();
        let s = c.combine(&strong, &weak);
        assert!((s[0] - (2.0 * 0.5f32.ln() - 0.7f32.ln())).abs() < 1e-5);
        assert!((s[1] - (2.0 * 0.3f32.ln() - 0.1f32.ln())).abs() < 1e-5);
        assert_eq!(s[2], f32::NEG_INFINITY);
        // The contrast prefers token 1, which the weak model underrates.
        assert!(s[1] > s[0]);
    }

    #[test]
    fn validate_rejects_bad_constants() {
        let c = |beta, alpha| {
            SelfContrast {
                weak: RoutingPolicy::new(),
                beta,
                alpha,
            }
            .validate()
        };
        assert!(c(0.5, 0.1).is_ok());
        assert!(c(-1.0, 0.1).is_err());
        assert!(c(0.5, 0.0).is_err());
        assert!(c(0.5, 1.5).is_err());
        assert!(c(f32::NAN, 0.1).is_err());
    }
}
