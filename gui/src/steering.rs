//! The active steering profile as the GUI edits it: one intervention per (layer, expert) and
//! per layer for top-k, checked against the model before every generation, saved and loaded as
//! the same TOML the CLI reads.

use std::path::Path;

use moescope_engine::{
    Intervention, InterventionKind, ModelConfig, RoutingPolicy, ScopeName, SteeringProfile,
    PROFILE_VERSION,
};

use crate::error::{require_path, Result};

/// The profile being edited.
#[derive(Debug, Clone, PartialEq)]
pub struct SteeringList {
    /// The interventions, in the order the user added them.
    pub profile: SteeringProfile,
}

impl Default for SteeringList {
    fn default() -> Self {
        Self {
            profile: SteeringProfile {
                version: PROFILE_VERSION,
                name: Some("gui".into()),
                description: None,
                interventions: Vec::new(),
            },
        }
    }
}

impl SteeringList {
    /// The interventions.
    pub fn items(&self) -> &[Intervention] {
        &self.profile.interventions
    }

    /// Whether nothing is steered.
    pub fn is_empty(&self) -> bool {
        self.profile.interventions.is_empty()
    }

    /// Sets what happens to `expert` at `layer`, replacing any earlier intervention on it.
    pub fn set(&mut self, layer: usize, expert: usize, kind: InterventionKind, value: Option<f64>) {
        self.remove_expert(layer, expert);
        self.profile.interventions.push(Intervention {
            layer,
            expert: Some(expert),
            kind,
            value,
            scope: ScopeName::Both,
        });
    }

    /// Routes `k` experts per token at `layer`, replacing an earlier top-k there.
    pub fn set_top_k(&mut self, layer: usize, k: usize) {
        self.profile
            .interventions
            .retain(|i| !(i.layer == layer && i.kind == InterventionKind::TopK));
        self.profile.interventions.push(Intervention {
            layer,
            expert: None,
            kind: InterventionKind::TopK,
            value: Some(k as f64),
            scope: ScopeName::Both,
        });
    }

    /// The intervention on `expert` at `layer`, if any.
    pub fn on_expert(&self, layer: usize, expert: usize) -> Option<&Intervention> {
        self.profile
            .interventions
            .iter()
            .find(|i| i.layer == layer && i.expert == Some(expert))
    }

    /// Drops the intervention on `expert` at `layer`.
    pub fn remove_expert(&mut self, layer: usize, expert: usize) {
        self.profile
            .interventions
            .retain(|i| !(i.layer == layer && i.expert == Some(expert)));
    }

    /// Drops the intervention at `index` of the list.
    pub fn remove_at(&mut self, index: usize) {
        if index < self.profile.interventions.len() {
            self.profile.interventions.remove(index);
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.profile.interventions.clear();
    }

    /// The routing policy, checked against the model exactly as a profile file would be.
    pub fn policy(&self, config: &ModelConfig) -> Result<RoutingPolicy> {
        Ok(self.profile.to_policy("the steering list", config)?)
    }

    /// Writes the list as a steering profile.
    pub fn save(&self, path: &Path) -> Result<()> {
        require_path(path, "the steering profile to write (.toml)")?;
        Ok(moescope_workbench::profiles::save_profile(
            &self.profile,
            path,
        )?)
    }

    /// The list as profile text (stored with a recording made under it).
    pub fn to_profile_text(&self) -> String {
        self.profile.to_toml().unwrap_or_default()
    }

    /// Replaces the list with a profile file, checked against the model.
    pub fn load(path: &Path, config: &ModelConfig) -> Result<Self> {
        require_path(path, "a steering profile (.toml)")?;
        let (profile, _) = SteeringProfile::load(path, config)?;
        Ok(Self { profile })
    }
}

/// One line describing an intervention, for the list and tooltips.
pub fn describe(i: &Intervention) -> String {
    let value = i.value.map(|v| format!(" {v}")).unwrap_or_default();
    match i.expert {
        Some(e) => format!("L{}:E{} {:?}{value}", i.layer, e, i.kind),
        None => format!("L{} top-k{value}", i.layer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_intervention_per_expert_and_one_top_k_per_layer() {
        let mut s = SteeringList::default();
        s.set(0, 11, InterventionKind::Mask, None);
        s.set(0, 11, InterventionKind::Scale, Some(2.0));
        s.set(1, 3, InterventionKind::Force, None);
        s.set_top_k(2, 3);
        s.set_top_k(2, 4);
        assert_eq!(s.items().len(), 3);
        assert_eq!(
            s.on_expert(0, 11).map(|i| i.kind),
            Some(InterventionKind::Scale)
        );
        assert_eq!(describe(&s.items()[2]), "L2 top-k 4");
        assert_eq!(describe(&s.items()[0]), "L0:E11 Scale 2");
        s.remove_expert(0, 11);
        assert!(s.on_expert(0, 11).is_none());
        s.remove_at(9);
        s.remove_at(0);
        assert_eq!(s.items().len(), 1);
        s.clear();
        assert!(s.is_empty());
    }
}
