//! The prompt-set panel as a user drives it on the embedded model: record the set (the
//! recording opens for browsing, and ranks its experts by a statistic), evaluate it with
//! intervals, unsteered and steered, and rank experts by attribution onto the grid. The numbers are the workbench's, the same functions
//! the CLI calls.

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use moescope_analysis::{Positions, Records};
use moescope_engine::{InterventionKind, RoutingPolicy};
use moescope_gui::set_work::StatChoice;
use moescope_gui::state::GridSource;
use moescope_gui::MoescopeApp;
use moescope_workbench::eval::{evaluate, EvalSettings};
use moescope_workbench::rankings::Statistic;
use moescope_workbench::{CancelFlag, Metric, ModelSpec, PromptSet, Silent};

mod common;
use common::{embedded_model, harness, repo, wait_for};

/// Clicks a button that hands a task to the worker and waits until the task ends.
fn run_task(h: &mut Harness<'static, MoescopeApp>, button: &str) {
    h.get_by_label(button).click();
    h.run_steps(1);
    assert!(h.state().busy, "{button} started a task");
    wait_for(h, button, |a| !a.busy);
}

fn load_set(h: &mut Harness<'static, MoescopeApp>, path: &str) {
    h.state_mut().prompt_set_path = repo(path).display().to_string();
    h.get_by_label("Load set").click();
    h.run_steps(2);
    assert!(!h.state().status.1, "{}", h.state().status.0);
}

#[test]
fn record_evaluate_and_attribute_a_prompt_set() {
    let mut h = harness(embedded_model());
    wait_for(&mut h, "the model", |a| a.model.is_some());
    load_set(&mut h, "datasets/examples/smoke.jsonl");

    // Record: the folder is written and opened for browsing.
    let out = std::env::temp_dir().join(format!("moescope-gui-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    h.state_mut().set_form.records_out = out.display().to_string();
    h.state_mut().set_form.record_generate = 4;
    run_task(&mut h, "Record");
    assert!(!h.state().status.1, "{}", h.state().status.0);
    let rec = h.state().recording.clone().expect("the recording opened");
    assert_eq!(rec.sequences.len(), 6);
    assert!(rec.run.complete);
    // Recording again into the same folder is refused, and the recording is kept.
    run_task(&mut h, "Record");
    assert!(h.state().status.1);
    assert!(h.state().status.0.contains("already holds a recording"));
    assert!(out.join("run.parquet").is_file());

    // Rank the recording by a statistic: the labels must be picked first, then the ranking is
    // the workbench's (as `moescope analyze contrast`) and colours the grid.
    h.state_mut().set_form.statistic = StatChoice::Contrast;
    h.get_by_label("Rank").click();
    h.run_steps(2);
    assert!(!h.state().busy);
    assert!(
        h.state().status.0.contains("pick the labels"),
        "{}",
        h.state().status.0
    );
    h.state_mut().set_form.behaviour = "numbers".into();
    h.state_mut().set_form.control = "prose".into();
    run_task(&mut h, "Rank");
    assert!(!h.state().status.1, "{}", h.state().status.0);
    let ranking = h.state().ranking.as_ref().expect("a ranking");
    assert!(ranking
        .path
        .display()
        .to_string()
        .starts_with("contrast of"));
    assert_eq!(h.state().grid_source, GridSource::Ranking);
    let direct = Statistic::Contrast {
        behaviour: "numbers".into(),
        control: "prose".into(),
    }
    .rank(&Records::open(&out).unwrap(), Positions::All, &Silent)
    .unwrap();
    let layers = direct[0].table.floats("layer").unwrap();
    let experts = direct[0].table.floats("expert").unwrap();
    let expected: Vec<(usize, usize)> = layers
        .iter()
        .zip(&experts)
        .map(|(&l, &e)| (l as usize, e as usize))
        .collect();
    assert_eq!(ranking.order, expected);
    std::fs::remove_dir_all(&out).unwrap();

    // Evaluate, unsteered then steered, against the workbench called directly.
    h.state_mut().set_form.metrics = "perplexity".into();
    run_task(&mut h, "Evaluate");
    let rows = h.state().set_form.eval_rows.clone();
    assert!(!h.state().status.1, "{}", h.state().status.0);
    assert_eq!(rows.len(), 1, "baseline only when nothing is steered");
    h.get_by_label("perplexity");
    h.state_mut()
        .steering
        .set(5, 15, InterventionKind::Mask, None);
    h.state_mut().set_form.random_draws = 2;
    run_task(&mut h, "Evaluate");
    let rows = h.state().set_form.eval_rows.clone();
    assert_eq!(
        rows.iter().map(|r| r.variant).collect::<Vec<_>>(),
        ["baseline", "steered", "random"]
    );

    // Opened as the app opens it: the stored dtype on the cpu.
    let ck = ModelSpec {
        dir: Some(repo("assets/default-model")),
        ..ModelSpec::default()
    }
    .open(&Silent)
    .unwrap();
    let set = PromptSet::load(&repo("datasets/examples/smoke.jsonl"), &ck.codec).unwrap();
    let mut policy = RoutingPolicy::new();
    policy.mask(5, 15);
    let settings = EvalSettings {
        max_tokens: h.state().max_tokens,
        batch: 8,
        resamples: 1000,
        level: 0.95,
        seed: 0,
        random_draws: 2,
    };
    let direct = evaluate(
        &ck,
        &set,
        &Metric::parse("perplexity").unwrap(),
        &policy,
        &settings,
        &Silent,
        &CancelFlag::new(),
    )
    .unwrap();
    assert_eq!(direct.len(), 3);
    for (gui, lib) in rows.iter().zip(&direct) {
        assert_eq!(gui.estimate.value, lib.estimate.value, "{}", gui.variant);
        assert_eq!(gui.estimate.low, lib.estimate.low);
        assert_eq!(gui.estimate.high, lib.estimate.high);
    }
    assert_ne!(rows[0].estimate.value, rows[1].estimate.value);

    // A metric that does not exist is a message, not a task.
    h.state_mut().set_form.metrics = "bleu".into();
    h.get_by_label("Evaluate").click();
    h.run_steps(2);
    assert!(!h.state().busy);
    assert!(h.state().status.1);
    assert!(
        h.state().status.0.contains("metric bleu"),
        "{}",
        h.state().status.0
    );

    // Attribute: every routed expert ranked, shown on the grid.
    h.state_mut().steering.clear();
    h.state_mut().set_form.target = " Sure".into();
    run_task(&mut h, "Attribute");
    assert!(!h.state().status.1, "{}", h.state().status.0);
    let config = h.state().model.clone().unwrap().config;
    let ranking = h.state().ranking.as_ref().expect("a ranking");
    assert_eq!(
        ranking.order.len(),
        config.moe_layers().len() * config.moe.num_experts
    );
    assert!(ranking.columns.iter().any(|c| c == "ablation_drop"));
    assert_eq!(h.state().grid_source, GridSource::Ranking);
    assert_eq!(h.state().selected, ranking.order.first().copied());
}
