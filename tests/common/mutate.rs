//! Text mutations for the seeded fuzz tests of the parsers moescope owns (configs, prompt sets,
//! steering profiles, experiment files): cut, repeated, swapped and spliced pieces of a valid
//! input, with the values that break parsers most often spliced in. Shared by the integration
//! tests and the binary's unit tests (included by path), so both mutate the same way.

use rand::rngs::StdRng;
use rand::Rng;

/// Pieces that are valid somewhere in the formats under test, or famously troublesome.
const PIECES: &[&str] = &[
    "\"",
    "'",
    "{",
    "}",
    "[",
    "]",
    "[[",
    "]]",
    "\n",
    "=",
    ",",
    ":",
    "#",
    "\\",
    "\\u0000",
    "0",
    "-1",
    "1e309",
    "-0.0",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "18446744073709551616",
    "4294967296",
    "65536",
    "null",
    "true",
    "\"\"",
    "\"../../x\"",
    "\"/tmp/x\"",
    "é",
    "🦀",
    "top_k",
    "layer",
    "expert",
    "value",
    "kind",
    "name",
    "prompt",
    "messages",
    "label",
];

/// How long a fuzz test runs: `default` cases (the short seeded run of the test suite), or
/// for `MOESCOPE_FUZZ_SECONDS` seconds when that is set (the long runs).
pub struct Budget {
    default: usize,
    until: Option<std::time::Instant>,
}

impl Budget {
    /// The budget for a test whose suite run is `default` cases.
    pub fn new(default: usize) -> Self {
        Self::part(default, 1)
    }

    /// One of `parts` equal shares of a test's time (a test that fuzzes several inputs in
    /// turn), or `default` cases.
    pub fn part(default: usize, parts: u32) -> Self {
        let seconds = std::env::var("MOESCOPE_FUZZ_SECONDS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        Self {
            default,
            until: seconds.map(|s| {
                std::time::Instant::now() + std::time::Duration::from_secs(s) / parts.max(1)
            }),
        }
    }

    /// Whether case number `round` (from 0) should run.
    pub fn more(&self, round: usize) -> bool {
        match self.until {
            Some(t) => std::time::Instant::now() < t,
            None => round < self.default,
        }
    }
}

/// `base` with one to four random mutations.
pub fn mutate(base: &str, rng: &mut StdRng) -> String {
    let mut text: Vec<char> = base.chars().collect();
    for _ in 0..rng.gen_range(1..=4) {
        let at = rng.gen_range(0..=text.len());
        match rng.gen_range(0..6) {
            0 => {
                let end = (at + rng.gen_range(1..40)).min(text.len());
                text.drain(at..end);
            }
            1 => {
                let piece = PIECES[rng.gen_range(0..PIECES.len())];
                text.splice(at..at, piece.chars());
            }
            2 => {
                let end = (at + rng.gen_range(1..80)).min(text.len());
                let copy: Vec<char> = text[at..end].to_vec();
                let to = rng.gen_range(0..=text.len());
                text.splice(to..to, copy);
            }
            3 => text.truncate(at),
            4 => {
                if at < text.len() {
                    text[at] = char::from(rng.gen_range(0u8..128));
                }
            }
            _ => {
                // Replace a number with a troublesome one.
                if let Some(start) = (at..text.len()).find(|&i| text[i].is_ascii_digit()) {
                    let end = (start..text.len())
                        .find(|&i| !text[i].is_ascii_digit() && text[i] != '.')
                        .unwrap_or(text.len());
                    let piece = ["0", "-1", "1e309", "NaN", "99999999999", "0.5", "255"]
                        [rng.gen_range(0..7)];
                    text.splice(start..end, piece.chars());
                }
            }
        }
    }
    text.into_iter().collect()
}
