//! Normalised pointwise mutual information between a token event and each expert being chosen
//! (the "cognitive experts" statistic), with the counts behind every value.

use std::collections::HashSet;

use crate::error::{AnalysisError, Result};
use crate::records::Records;
use crate::scan::{fold_choices, scan_choices, Choice, Needs};
use crate::stats::{add_grid, add_into, grid, layer_expert_columns, Positions};
use crate::table::{Column, Table};

/// The event x on a token position.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenEvent {
    /// The token's text is one of these (compared as is and with surrounding spaces trimmed).
    Tokens(HashSet<String>),
    /// The token's sequence carries this label.
    Label(String),
    /// The token lies in a span from an `open` token to a `close` token, both included.
    Span {
        /// The token that opens a span (e.g. `<think>`).
        open: String,
        /// The token that closes it (e.g. `</think>`).
        close: String,
    },
}

/// Tokens of each layer (`n`), those with the event (`nx`), per expert those routed to it
/// (`ny`) and those with the event routed to it (`nxy`).
struct NpmiCounts {
    n: Vec<u64>,
    nx: Vec<u64>,
    ny: Vec<Vec<u64>>,
    nxy: Vec<Vec<u64>>,
}

impl NpmiCounts {
    fn add(&mut self, c: &Choice<'_>, x_here: bool, positions: Positions) {
        if !positions.admits(c.is_generated) {
            return;
        }
        let l = c.layer_slot;
        self.n[l] += 1;
        if x_here {
            self.nx[l] += 1;
        }
        for &e in c.experts {
            self.ny[l][e as usize] += 1;
            if x_here {
                self.nxy[l][e as usize] += 1;
            }
        }
    }

    fn merge(&mut self, other: NpmiCounts) {
        add_into(&mut self.n, &other.n);
        add_into(&mut self.nx, &other.nx);
        add_grid(&mut self.ny, &other.ny);
        add_grid(&mut self.nxy, &other.nxy);
    }
}

/// nPMI(x, expert e chosen) per layer and expert, with `n` (tokens of the layer), `n_x`,
/// `n_y`, `n_xy`. Rows with `n_xy < min_count` are dropped (rare pairs give wild values);
/// sorted by nPMI, highest first.
pub fn npmi(
    records: &Records,
    event: &TokenEvent,
    min_count: u64,
    positions: Positions,
) -> Result<Table> {
    let labels = records.labels();
    if let TokenEvent::Label(l) = event {
        if !labels.contains(&Some(l.as_str())) {
            return Err(AnalysisError::Invalid(format!(
                "no sequence has label `{l}`; labels present: {}",
                present_labels(records)
            )));
        }
    }
    let layers = records.run.moe_layers.len();
    let init = || NpmiCounts {
        n: vec![0; layers],
        nx: vec![0; layers],
        ny: grid(records, 0u64),
        nxy: grid(records, 0u64),
    };
    let needs = Needs {
        token_text: !matches!(event, TokenEvent::Label(_)),
        sequence: !matches!(event, TokenEvent::Tokens(_)),
        ..Needs::default()
    };
    let counts = match event {
        TokenEvent::Span { open, close } => {
            // Span state: the sequence and position last seen, whether it is in a span, and
            // whether a span is open after it. Needs file order, so one thread.
            let mut s = init();
            let mut at: Option<(u32, u32)> = None;
            let mut x_here = false;
            let mut open_after = false;
            scan_choices(records, needs, |c| {
                if at != Some((c.seq_index, c.position)) {
                    if at.map(|a| a.0) != Some(c.seq_index) {
                        open_after = false;
                    }
                    at = Some((c.seq_index, c.position));
                    let text = c.token_text;
                    let is = |t: &str| text == t || text.trim() == t;
                    x_here = if is(open) {
                        open_after = true;
                        true
                    } else if is(close) {
                        let inside = open_after;
                        open_after = false;
                        inside
                    } else {
                        open_after
                    };
                }
                s.add(c, x_here, positions);
                Ok(())
            })?;
            s
        }
        TokenEvent::Tokens(set) => {
            // Token sets are small: comparing with each member beats hashing every choice's
            // text (a hash per choice was 12% of a 100M-row scan).
            let members: Vec<&str> = set.iter().map(String::as_str).collect();
            let is_member = |t: &str| {
                if members.len() <= 16 {
                    members.contains(&t)
                } else {
                    set.contains(t)
                }
            };
            fold_choices(
                records,
                needs,
                init,
                |s, c| {
                    let text = c.token_text;
                    let trimmed = text.trim();
                    let x = is_member(text) || (trimmed.len() < text.len() && is_member(trimmed));
                    s.add(c, x, positions)
                },
                NpmiCounts::merge,
            )?
        }
        TokenEvent::Label(l) => fold_choices(
            records,
            needs,
            init,
            |s, c| {
                let label = labels.get(c.seq_index as usize).copied().flatten();
                s.add(c, label == Some(l.as_str()), positions)
            },
            NpmiCounts::merge,
        )?,
    };
    let NpmiCounts { n, nx, ny, nxy } = counts;
    let (layer_col, expert_col) = layer_expert_columns(records);
    let (mut cn, mut cx, mut cy, mut cxy, mut v) = (vec![], vec![], vec![], vec![], vec![]);
    for l in 0..n.len() {
        for e in 0..records.run.num_experts as usize {
            cn.push(n[l]);
            cx.push(nx[l]);
            cy.push(ny[l][e]);
            cxy.push(nxy[l][e]);
            v.push(npmi_value(n[l], nx[l], ny[l][e], nxy[l][e]));
        }
    }
    let keep: Vec<bool> = cxy.iter().map(|&c| c >= min_count).collect();
    let t = Table::default()
        .with("layer", layer_col)
        .with("expert", expert_col)
        .with("npmi", Column::Float(v))
        .with("n", Column::Int(cn))
        .with("n_x", Column::Int(cx))
        .with("n_y", Column::Int(cy))
        .with("n_xy", Column::Int(cxy));
    Ok(t.filtered(|i| keep[i]).sorted_desc("npmi", false))
}

/// nPMI from counts: −1 when x and y never co-occur, NaN when either never occurs.
pub fn npmi_value(n: u64, nx: u64, ny: u64, nxy: u64) -> f64 {
    if n == 0 || nx == 0 || ny == 0 {
        return f64::NAN;
    }
    if nxy == 0 {
        return -1.0;
    }
    let (n, nx, ny, nxy) = (n as f64, nx as f64, ny as f64, nxy as f64);
    let pxy = nxy / n;
    if pxy >= 1.0 {
        return 1.0;
    }
    let pmi = (pxy / ((nx / n) * (ny / n))).ln();
    pmi / -pxy.ln()
}

pub(crate) fn present_labels(records: &Records) -> String {
    let mut l: Vec<&str> = records
        .sequences
        .iter()
        .filter_map(|s| s.label.as_deref())
        .collect();
    l.sort_unstable();
    l.dedup();
    if l.is_empty() {
        "none (the prompt set had no `label` fields)".into()
    } else {
        l.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testdata::tiny_records;

    fn value(t: &Table, layer: f64, expert: f64) -> Option<(f64, f64)> {
        let (l, e) = (t.floats("layer").unwrap(), t.floats("expert").unwrap());
        (0..t.num_rows())
            .find(|&i| l[i] == layer && e[i] == expert)
            .map(|i| (t.floats("npmi").unwrap()[i], t.floats("n_xy").unwrap()[i]))
    }

    #[test]
    fn token_event_matches_hand_computation() {
        let (_d, rec) = tiny_records();
        let ev = TokenEvent::Tokens(["<think>".to_string()].into());
        let t = npmi(&rec, &ev, 0, Positions::All).unwrap();
        // Layer 0: N=4, N_x=2. Expert 0: N_y=3, N_xy=1 → ln(0.25/0.375)/ln 4.
        let (v0, _) = value(&t, 0.0, 0.0).unwrap();
        assert!((v0 - (0.25f64 / 0.375).ln() / 4f64.ln()).abs() < 1e-12);
        assert!(value(&t, 0.0, 1.0).unwrap().0.abs() < 1e-12);
        assert!((value(&t, 0.0, 3.0).unwrap().0 - 0.5).abs() < 1e-12);
        // Highest first.
        let col = t.floats("npmi").unwrap();
        assert!(col.windows(2).all(|w| w[0] >= w[1] || w[1].is_nan()));
        // The minimum-count filter drops pairs seen fewer times.
        let filtered = npmi(&rec, &ev, 2, Positions::All).unwrap();
        assert!(filtered.floats("n_xy").unwrap().iter().all(|&c| c >= 2.0));
        assert!(value(&filtered, 0.0, 3.0).is_none());
    }

    #[test]
    fn label_and_span_events() {
        let (_d, rec) = tiny_records();
        let t = npmi(
            &rec,
            &TokenEvent::Label("refusal".into()),
            0,
            Positions::All,
        )
        .unwrap();
        // Expert 1 at layer 0 is chosen exactly on the refusal tokens: nPMI = 1.
        let (v, nxy) = value(&t, 0.0, 1.0).unwrap();
        assert_eq!(nxy, 2.0);
        assert!((v - 1.0).abs() < 1e-12);
        // Expert 3 never co-occurs with the label: −1.
        assert_eq!(value(&t, 0.0, 3.0).unwrap().0, -1.0);
        assert!(npmi(&rec, &TokenEvent::Label("nope".into()), 0, Positions::All).is_err());
        // Span `<think>`…(never closed): seq 0 pos 1, seq 1 pos 0 and 1.
        let span = TokenEvent::Span {
            open: "<think>".into(),
            close: "</think>".into(),
        };
        let t = npmi(&rec, &span, 0, Positions::All).unwrap();
        let n_x = t.floats("n_x").unwrap()[0];
        assert_eq!(n_x, 3.0);
    }

    #[test]
    fn edge_values() {
        assert!(npmi_value(10, 0, 3, 0).is_nan());
        assert_eq!(npmi_value(10, 5, 5, 0), -1.0);
        assert_eq!(npmi_value(4, 4, 4, 4), 1.0);
    }
}
