//! Data safety on the command line: no input panics the binary, no output replaces an input
//! or a folder the command did not write, interruptions leave complete marked files and a
//! non-zero status. One test per way data used to be lost (issue "Data safety").

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{moescope, repo_root};
use moescope_analysis::scan::{scan_choices, Needs};
use moescope_analysis::Records;

/// A fresh folder under the system's temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("moescope-safety-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn arg(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn smoke_prompts() -> String {
    repo_root()
        .join("datasets/examples/smoke.jsonl")
        .display()
        .to_string()
}

/// Asserts a failed run that names every part in its message and did not panic.
fn fails_naming(args: &[&str], parts: &[&str]) {
    let (ok, _, err) = moescope(args);
    assert!(!ok, "{args:?} should fail");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    for p in parts {
        assert!(err.contains(p), "{args:?}: message lacks {p:?}: {err}");
    }
}

/// A steering profile changing top-k at one layer of the default model (top-2 elsewhere).
fn top_k_profile(dir: &Scratch, layer: usize, k: usize, scope: &str) -> String {
    let text = format!(
        "version = 1\nname = \"top-k\"\n\n[[intervention]]\nlayer = {layer}\nkind = \"top_k\"\nvalue = {k}\nscope = \"{scope}\"\n"
    );
    let path = dir.path(&format!("topk-{layer}-{k}-{scope}.toml"));
    std::fs::write(&path, text).expect("profile");
    path.display().to_string()
}

/// Per (layer slot, generated?) the set of experts-per-token counts seen in a recording, after
/// checking that each token's weights are its own (they sum to 1 for a softmax top-k router
/// with normalised weights, or at most 1 otherwise).
fn choices_per_token(records: &Path) -> Vec<(usize, bool, usize)> {
    let rec = Records::open(records).expect("records open");
    let mut seen = std::collections::BTreeSet::new();
    scan_choices(&rec, Needs::default(), |c| {
        let sum: f32 = c.weights.iter().sum();
        assert!(sum <= 1.0 + 1e-4, "weights of one token sum to {sum}");
        let mut experts = c.experts.to_vec();
        experts.sort_unstable();
        experts.dedup();
        assert_eq!(
            experts.len(),
            c.experts.len(),
            "an expert twice in one token"
        );
        seen.insert((c.layer_slot, c.is_generated, c.experts.len()));
        Ok(())
    })
    .expect("scan");
    seen.into_iter().collect()
}

#[test]
fn per_layer_and_generated_only_top_k_record_and_analyze() {
    let dir = Scratch::new("topk");
    for (k, scope) in [(1, "both"), (4, "both"), (1, "generated"), (4, "generated")] {
        let profile = top_k_profile(&dir, 2, k, scope);
        let out = dir.arg(&format!("rec-{k}-{scope}"));
        let (ok, _, err) = moescope(&[
            "record",
            "--prompts",
            &smoke_prompts(),
            "--out",
            &out,
            "--steer",
            &profile,
            "--generate",
            "3",
        ]);
        assert!(ok, "record with top_k {k} ({scope}): {err}");
        let seen = choices_per_token(Path::new(&out));
        // Layer 2 is the third MoE layer of the default model (every layer is MoE).
        for &(slot, generated, n) in &seen {
            let changed = slot == 2 && (scope == "both" || generated);
            assert_eq!(
                n,
                if changed { k } else { 2 },
                "slot {slot} generated {generated}: {seen:?}"
            );
        }
        assert!(
            seen.iter().any(|&(s, g, _)| s == 2 && g),
            "generated tokens recorded"
        );
        for stat in ["freq", "consistency"] {
            let stat_out = dir.arg(&format!("{stat}-{k}-{scope}"));
            let (ok, _, err) = moescope(&["analyze", stat, "--records", &out, "--out", &stat_out]);
            assert!(ok, "analyze {stat}: {err}");
        }
    }
}

#[test]
fn show_routing_prints_each_layers_own_top_k() {
    let dir = Scratch::new("showrouting");
    let profile = top_k_profile(&dir, 1, 1, "generated");
    let (ok, out, err) = moescope(&[
        "generate",
        "--prompt",
        "The cat",
        "--max-tokens",
        "4",
        "--steer",
        &profile,
        "--show-routing",
    ]);
    assert!(ok, "{err}");
    let table = out
        .split("routing (experts chosen")
        .nth(1)
        .expect("routing table");
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.contains(" | "))
        .skip(1)
        .collect();
    assert!(rows.len() >= 3, "{table}");
    for row in rows {
        let cells: Vec<&str> = row.split(" | ").collect();
        // cells[0] holds position, token and layer 0's experts; cells[1] is layer 1.
        let layer1 = cells[1].split(',').count();
        let generated = row.contains("*");
        assert_eq!(layer1, if generated { 1 } else { 2 }, "{row}");
        assert_eq!(cells[2].trim().split(',').count(), 2, "{row}");
    }
}

/// Records the smoke set into `out` (a fresh recording).
fn record(out: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["record", "--prompts", &smoke_prompts_static(), "--out", out];
    args.extend_from_slice(extra);
    let (ok, _, err) = moescope(&args);
    (ok, err)
}

fn smoke_prompts_static() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(smoke_prompts)
}

#[test]
fn outputs_never_replace_the_records_they_read() {
    let dir = Scratch::new("analyzeout");
    let rec = dir.arg("rec");
    assert!(record(&rec, &[]).0);
    let before = std::fs::read(dir.path("rec/routing.parquet")).expect("routing");
    for out in ["rec/routing", "rec/run.parquet", "rec/sequences"] {
        fails_naming(
            &["analyze", "freq", "--records", &rec, "--out", &dir.arg(out)],
            &["would replace", "choose an --out"],
        );
    }
    assert_eq!(
        std::fs::read(dir.path("rec/routing.parquet")).unwrap(),
        before
    );
    // Beside the tables, under other names, is fine.
    let (ok, _, err) = moescope(&[
        "analyze",
        "freq",
        "--records",
        &rec,
        "--out",
        &dir.arg("rec/freq"),
    ]);
    assert!(ok, "{err}");
}

#[test]
fn record_refuses_an_existing_recording_and_never_mixes_runs() {
    let dir = Scratch::new("rerecord");
    let rec = dir.arg("rec");
    assert!(record(&rec, &["--full-probs", "--run-id", "first"]).0);
    let (ok, err) = record(&rec, &["--run-id", "second"]);
    assert!(
        !ok && err.contains("already holds a recording") && err.contains("--overwrite"),
        "{err}"
    );
    assert!(Records::open(Path::new(&rec)).unwrap().run.run_id == "first");
    let (ok, err) = record(&rec, &["--run-id", "second", "--overwrite"]);
    assert!(ok, "{err}");
    assert_eq!(Records::open(Path::new(&rec)).unwrap().run.run_id, "second");
    assert!(
        !dir.path("rec/router_probs.parquet").exists(),
        "the first run's router_probs.parquet was left beside the second run"
    );
}

fn write_experiment(dir: &Scratch, name: &str, arms: &[&str]) -> String {
    let root = repo_root();
    let mut text = format!(
        "version = 1\nname = {name:?}\ndtype = \"f32\"\n\n[detect]\nprompts = \"{}\"\nstatistic = \"contrast\"\nbehaviour = \"refusal\"\ncontrol = \"comply\"\n\n[sweep]\nsizes = [1]\n",
        root.join("datasets/refusal/detect.jsonl").display()
    );
    for arm in arms {
        text.push_str(&format!(
            "\n[[arm]]\nname = {arm:?}\nintervention = \"mask\"\neval = \"forbidden\"\nexpect = \"lower\"\n"
        ));
    }
    text.push_str(&format!(
        "\n[[eval]]\nname = \"forbidden\"\nprompts = \"{}\"\nrules = \"{}\"\nmetrics = [\"rule:refusal\"]\n",
        root.join("datasets/refusal/heldout-forbidden.jsonl").display(),
        root.join("datasets/examples/rules.toml").display()
    ));
    text.push_str(&format!(
        "\n[quality]\nprompts = \"{}\"\n",
        root.join("datasets/neutral/heldout.jsonl").display()
    ));
    let path = dir.path(&format!("exp-{}-{}.toml", slug_for_file(name), arms.len()));
    std::fs::write(&path, text).expect("experiment");
    path.display().to_string()
}

fn slug_for_file(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).collect()
}

#[test]
fn experiment_names_are_checked_before_anything_is_written() {
    let dir = Scratch::new("expnames");
    for (name, arms, why) in [
        ("../../x", vec!["mask"], "leave out /"),
        ("/tmp/abs", vec!["mask"], "leave out /"),
        ("", vec!["mask"], "at least one letter or digit"),
        ("ok", vec!["a/b"], "leave out /"),
        ("ok", vec!["mask", "mask"], "same arm"),
        ("ok", vec!["Mask A", "mask-a"], "same arm"),
    ] {
        let file = write_experiment(&dir, name, &arms);
        let (ok, _, err) = moescope(&["experiment", "check", &file]);
        assert!(!ok && err.contains(why), "{name} {arms:?}: {err}");
    }
    let file = write_experiment(&dir, "fine name", &["mask"]);
    let (ok, _, err) = moescope(&["experiment", "check", &file]);
    assert!(ok, "{err}");
}

#[test]
fn experiment_overwrite_never_deletes_a_folder_it_did_not_write() {
    let dir = Scratch::new("expoverwrite");
    let file = write_experiment(&dir, "safety", &["mask"]);
    let out = dir.path("mine");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "keep me").unwrap();
    fails_naming(
        &[
            "experiment",
            "run",
            &file,
            "--out",
            &out.display().to_string(),
            "--overwrite",
        ],
        &["not a report written by", "will not delete"],
    );
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "keep me"
    );
    // A report folder (marked) whose rerun fails on a missing model is left as it was.
    std::fs::write(out.join(".moescope-report"), "").unwrap();
    let bad = std::fs::read_to_string(&file).unwrap().replace(
        "dtype = \"f32\"",
        "dtype = \"f32\"\nmodel = \"/nonexistent/model\"",
    );
    let bad_file = dir.path("bad.toml");
    std::fs::write(&bad_file, bad).unwrap();
    let (ok, _, _) = moescope(&[
        "experiment",
        "run",
        &bad_file.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--overwrite",
    ]);
    assert!(!ok);
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    for args in [
        vec!["info"],
        vec!["generate", "--prompt", "The cat", "--max-tokens", "16"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_moescope"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
    }
}

#[test]
fn size_options_are_bounded_with_a_message() {
    fails_naming(
        &["bench", "--batch", "100000000"],
        &["--batch", "1 to 1024"],
    );
    fails_naming(
        &["bench", "--prompt-len", "0"],
        &["--prompt-len", "out of range"],
    );
    fails_naming(
        &[
            "eval",
            "--prompts",
            "x.jsonl",
            "--resamples",
            "18446744073709551615",
        ],
        &["--resamples", "1 to 100000"],
    );
    fails_naming(
        &["generate", "--prompt", "a", "--temperature", "inf"],
        &["not a finite number"],
    );
    fails_naming(
        &["generate", "--prompt", "a", "--top-p", "NaN"],
        &["not a finite number"],
    );
    // Within the bounds but beyond the machine: refused before any work.
    fails_naming(
        &["bench", "--batch", "1024", "--prompt-len", "1048576"],
        &["GB of memory is available", "smaller batch"],
    );
}

/// Sends `signal` to a recording once its partial files exist; returns (exit code, records).
#[cfg(unix)]
fn interrupted_record(dir: &Scratch, signal: i32) -> (Option<i32>, PathBuf) {
    let out = dir.path(&format!("rec-{signal}"));
    let prompts = repo_root().join("datasets/refusal/detect.jsonl");
    let child = Command::new(env!("CARGO_BIN_EXE_moescope"))
        .args(["record", "--prompts"])
        .arg(&prompts)
        .arg("--out")
        .arg(&out)
        .args(["--generate", "48", "--batch", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while !out.join(".routing.parquet.partial").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "recording never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = child.wait_with_output().expect("wait").status;
    (status.code(), out)
}

#[cfg(unix)]
#[test]
fn sigint_and_sigterm_leave_complete_marked_files_and_exit_130() {
    let dir = Scratch::new("signals");
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let (code, out) = interrupted_record(&dir, signal);
        assert_eq!(code, Some(130), "signal {signal}");
        let rec = Records::open(&out).expect("complete files after the signal");
        assert!(!rec.run.complete, "marked as interrupted");
        let leftovers: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .collect();
        assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
    }
}

#[test]
fn failed_writes_say_cannot_write_once() {
    let dir = Scratch::new("cannotwrite");
    // A regular file stands where a folder would have to be.
    std::fs::write(dir.path("file"), "x").unwrap();
    let out = dir.arg("file/rec");
    let (ok, _, err) = moescope(&["record", "--prompts", smoke_prompts_static(), "--out", &out]);
    assert!(!ok);
    assert!(
        err.contains("cannot write") && !err.contains("cannot read"),
        "{err}"
    );
    let os_text = "Not a directory";
    assert_eq!(err.matches(os_text).count(), 1, "the OS error once: {err}");
}

#[test]
fn a_prompt_too_long_is_named_before_any_work() {
    let dir = Scratch::new("toolong");
    let long = "word ".repeat(3000);
    let text = format!(
        "{{\"id\": \"a\", \"prompt\": \"short\"}}\n\n{{\"id\": \"huge\", \"prompt\": \"{long}\"}}\n"
    );
    std::fs::write(dir.path("p.jsonl"), text).unwrap();
    let out = dir.arg("rec");
    fails_naming(
        &[
            "record",
            "--prompts",
            &dir.arg("p.jsonl"),
            "--out",
            &out,
            "--batch",
            "1",
        ],
        &["p.jsonl line 3", "prompt huge", "context of 1024"],
    );
    assert!(!dir.path("rec").exists(), "nothing written");
}

/// How a rerun is disturbed: a signal after a delay, or writes failing once a file passes a
/// size (`RLIMIT_FSIZE` with `SIGXFSZ` ignored, so a write past it fails as on a full disk,
/// without needing a small filesystem).
#[cfg(unix)]
#[derive(Clone, Copy, Debug)]
enum Disturbance {
    Signal(i32, Duration),
    FilesCappedAt(u64),
}

/// Every disturbance the matrix tries on a command taking about `typical` to run.
#[cfg(unix)]
fn disturbances(typical: Duration) -> Vec<Disturbance> {
    let mut all = vec![
        Disturbance::FilesCappedAt(600),
        Disturbance::FilesCappedAt(6000),
    ];
    for frac in [0.0, 0.25, 0.6, 0.9] {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            all.push(Disturbance::Signal(signal, typical.mul_f64(frac)));
        }
    }
    all
}

/// Runs the binary with `args` under `how`; returns its exit code (`None`: ended by a signal)
/// and its stderr.
#[cfg(unix)]
fn disturbed(args: &[String], how: Disturbance) -> (Option<i32>, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moescope"));
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    if let Disturbance::FilesCappedAt(bytes) = how {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let cap = libc::rlimit {
                    rlim_cur: bytes,
                    rlim_max: bytes,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &cap) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd.spawn().expect("spawn");
    if let Disturbance::Signal(signal, after) = how {
        std::thread::sleep(after);
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, signal) };
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `dir` (hidden ones too, so a leftover temporary file shows) with its bytes.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list").filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p.strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, std::fs::read(&p).expect("read"));
            }
        }
    }
    files
}

/// Copies every file of `from` into a fresh `to`.
fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    for (name, bytes) in snapshot(from) {
        let p = to.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

/// The outputs of `run(out)` disturbed every way are, file for file, either the old outputs
/// (made by `old(out)`) or the new ones an undisturbed `run` makes — never a mix, never a
/// leftover temporary file — and the command never panics or exits 0 when stopped.
#[cfg(unix)]
fn old_or_new_under_every_disturbance(
    dir: &Scratch,
    name: &str,
    old: impl Fn(&Path) -> Vec<String>,
    new: impl Fn(&Path) -> Vec<String>,
    complete_new: Option<fn(&Path) -> bool>,
) {
    let make = |args: Vec<String>| {
        let (code, err) = disturbed(&args, Disturbance::FilesCappedAt(u64::MAX));
        assert_eq!(code, Some(0), "{args:?}: {err}");
    };
    let old_dir = dir.path(&format!("{name}-old"));
    make(old(&old_dir));
    let new_dir = dir.path(&format!("{name}-new"));
    let start = Instant::now();
    make(new(&new_dir));
    let typical = start.elapsed();
    let (old_files, new_files) = (snapshot(&old_dir), snapshot(&new_dir));
    assert_ne!(
        old_files, new_files,
        "{name}: old and new outputs must differ"
    );
    let target = dir.path(&format!("{name}-target"));
    let mut kept = 0;
    for how in disturbances(typical) {
        copy_tree(&old_dir, &target);
        let (code, err) = disturbed(&new(&target), how);
        assert!(!err.contains("panicked"), "{name} {how:?}: {err}");
        let now = snapshot(&target);
        if now == old_files {
            kept += 1;
            assert_ne!(code, Some(0), "{name} {how:?}: old outputs kept but exit 0");
        } else {
            assert_eq!(
                now.keys().collect::<Vec<_>>(),
                new_files.keys().collect::<Vec<_>>(),
                "{name} {how:?}: a mix of old and new files, or a temporary file left"
            );
            // New outputs are a clean run's byte for byte, or, for outputs that carry their
            // own time or stop after the current step, what `complete_new` accepts.
            let accepted = complete_new.is_some_and(|complete| complete(&target));
            let differing: Vec<&String> = now
                .iter()
                .filter(|(n, bytes)| new_files.get(*n) != Some(bytes))
                .map(|(n, _)| n)
                .collect();
            assert!(
                now == new_files || accepted,
                "{name} {how:?}: {differing:?} differ from a clean run's (exit {code:?}): {err}"
            );
        }
        if let Disturbance::FilesCappedAt(_) = how {
            assert_eq!(
                now, old_files,
                "{name}: a failed write replaced the old outputs"
            );
            assert!(err.contains("cannot write"), "{name} {how:?}: {err}");
        }
    }
    assert!(
        kept > 0,
        "{name}: no disturbance stopped the command in time"
    );
}

/// A small recording with generated tokens, for the analysis commands.
fn small_recording(dir: &Scratch) -> String {
    let rec = dir.arg("rec");
    let (ok, _, err) = moescope(&[
        "record",
        "--prompts",
        smoke_prompts_static(),
        "--out",
        &rec,
        "--generate",
        "6",
    ]);
    assert!(ok, "{err}");
    rec
}

fn strings(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

#[cfg(unix)]
#[test]
fn analyze_leaves_old_or_new_outputs_under_signals_and_full_disks() {
    let dir = Scratch::new("disturbed-analyze");
    let rec = small_recording(&dir);
    let freq = |positions: &'static str| {
        let rec = rec.clone();
        move |out: &Path| {
            let out = out.join("freq").display().to_string();
            strings(&[
                "analyze",
                "freq",
                "--records",
                &rec,
                "--out",
                &out,
                "--positions",
                positions,
            ])
        }
    };
    old_or_new_under_every_disturbance(&dir, "freq", freq("prompt"), freq("all"), None);
}

#[cfg(unix)]
#[test]
fn record_leaves_old_or_new_outputs_under_signals_and_full_disks() {
    let dir = Scratch::new("disturbed-record");
    let prompts = repo_root().join("datasets/refusal/detect.jsonl");
    let record = |generate: &'static str| {
        let prompts = prompts.display().to_string();
        move |out: &Path| {
            let out = out.join("rec").display().to_string();
            strings(&[
                "record",
                "--prompts",
                &prompts,
                "--out",
                &out,
                "--generate",
                generate,
                "--run-id",
                "fixed",
                "--overwrite",
            ])
        }
    };
    // A recording carries its creation time, so a new one is judged by its tables (which
    // `Records::open` checks against each other): generated tokens (the old one has none),
    // and every prompt, or the prompts finished before a signal, marked as such.
    let complete = |target: &Path| {
        Records::open(&target.join("rec")).is_ok_and(|r| {
            let generated = r.sequences.iter().any(|s| s.generated_tokens > 0);
            generated && (r.sequences.len() == 96 || !r.run.complete)
        })
    };
    old_or_new_under_every_disturbance(&dir, "rec", record("0"), record("8"), Some(complete));
}

#[cfg(unix)]
#[test]
fn attribute_leaves_old_or_new_outputs_under_signals_and_full_disks() {
    let dir = Scratch::new("disturbed-attribute");
    // Four prompts of the detection set: enough for a run of a second or so.
    let detect = std::fs::read_to_string(repo_root().join("datasets/refusal/detect.jsonl"))
        .expect("detection prompts");
    let prompts = dir.path("four.jsonl");
    let four: Vec<&str> = detect.lines().take(4).collect();
    std::fs::write(&prompts, four.join("\n")).unwrap();
    let attribute = |target: &'static str| {
        let prompts = prompts.display().to_string();
        move |out: &Path| {
            let out = out.join("attr").display().to_string();
            strings(&[
                "analyze",
                "attribute",
                "--prompts",
                &prompts,
                "--label",
                "refusal",
                "--target",
                target,
                "--out",
                &out,
            ])
        }
    };
    old_or_new_under_every_disturbance(&dir, "attr", attribute(" I"), attribute(" Sure"), None);
}

#[cfg(unix)]
#[test]
fn eval_stopped_by_a_signal_exits_130() {
    let dir = Scratch::new("disturbed-eval");
    // The held-out set twenty times over (ids made unique): seconds of work on any machine.
    let one = std::fs::read_to_string(repo_root().join("datasets/refusal/heldout-forbidden.jsonl"))
        .expect("prompts");
    let mut many = String::new();
    for copy in 0..20 {
        for line in one.lines().filter(|l| !l.trim().is_empty()) {
            many.push_str(&line.replacen("\"id\": \"", &format!("\"id\": \"c{copy}-"), 1));
            many.push('\n');
        }
    }
    let prompts = dir.path("many.jsonl");
    std::fs::write(&prompts, many).unwrap();
    let rules = repo_root().join("datasets/examples/rules.toml");
    let args = strings(&[
        "eval",
        "--prompts",
        &prompts.display().to_string(),
        "--metric",
        &format!("rules:{}", rules.display()),
        "--mask",
        "0:1",
    ]);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let (code, err) = disturbed(
            &args,
            Disturbance::Signal(signal, Duration::from_millis(400)),
        );
        assert_eq!(code, Some(130), "signal {signal}: {err}");
    }
}

#[cfg(unix)]
#[test]
fn experiment_overwrite_keeps_the_old_report_until_the_new_one_is_complete() {
    let dir = Scratch::new("disturbed-experiment");
    let file = write_experiment(&dir, "disturbed", &["mask"]);
    let out = dir.path("report");
    let run = strings(&[
        "experiment",
        "run",
        &file,
        "--out",
        &out.display().to_string(),
        "--overwrite",
    ]);
    let (code, err) = disturbed(&run, Disturbance::FilesCappedAt(u64::MAX));
    assert_eq!(code, Some(0), "{err}");
    let old = snapshot(&out);
    let beside = || {
        let mut names: Vec<String> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("report"))
            .collect();
        names.sort();
        names
    };
    // A write failing part way: the old report as it was, no staging folder left.
    let (code, err) = disturbed(&run, Disturbance::FilesCappedAt(600));
    assert!(
        code != Some(0) && err.contains("cannot write"),
        "{code:?}: {err}"
    );
    assert!(snapshot(&out) == old, "the old report changed: {err}");
    assert_eq!(beside(), ["report"]);
    // A signal: either the old report or a new, complete one marked partial; exit 130.
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let (code, err) = disturbed(&run, Disturbance::Signal(signal, Duration::from_secs(2)));
        assert_eq!(code, Some(130), "{err}");
        let md = std::fs::read_to_string(out.join("report.md")).expect("a report");
        assert!(md.contains("partial") || snapshot(&out) == old, "{md}");
        assert_eq!(beside(), ["report"]);
    }
}
