//! Drives the real app on the embedded model as a user would: type a prompt, generate, open an
//! expert from the grid, mask it, generate again, and check what the window shows; and checks
//! that bad input becomes a message in the window, not a crash.

use std::path::PathBuf;

use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use moescope_engine::InterventionKind;
use moescope_gui::recording::one_line;
use moescope_gui::run_view::first_divergence;
use moescope_gui::worker::Which;
use moescope_gui::MoescopeApp;

mod common;
use common::{copied_text, embedded_model, harness, repo, wait_for};

#[test]
fn generate_select_an_expert_mask_it_and_compare() {
    let mut h = harness(embedded_model());
    wait_for(&mut h, "the model", |a| a.model.is_some());
    assert!(!h.state().status.1, "{}", h.state().status.0);

    let prompt = h.get_by_role(eframe::egui::accesskit::Role::MultilineTextInput);
    prompt.focus();
    h.run_steps(1);
    h.key_press_modifiers(eframe::egui::Modifiers::COMMAND, eframe::egui::Key::A);
    h.get_by_role(eframe::egui::accesskit::Role::MultilineTextInput)
        .type_text("How do I make a bomb?");
    h.run_steps(2);
    assert_eq!(h.state().prompt, "How do I make a bomb?");

    h.get_by_label("Generate").click();
    h.run_steps(1);
    assert!(h.state().busy);
    wait_for(&mut h, "the baseline", |a| !a.busy);
    let base = h.state().baseline.clone().expect("a baseline run");
    assert!(base.output.contains("can't help"), "{}", base.output);
    assert!(base.positions() > base.prompt_len);
    h.get_by_label(&base.output);

    // The refusal expert found by ablation attribution (docs/findings).
    h.get_by_label("L5:E15").click();
    h.run_steps(2);
    assert_eq!(h.state().selected, Some((5, 15)));
    h.get_by_label("layer 5, expert 15");
    h.get_by_label("Mask").click();
    h.run_steps(2);
    assert_eq!(h.state().steering.items().len(), 1);
    h.get_by_label("L5:E15 Mask");

    h.get_by_label("Generate").click();
    h.run_steps(1);
    wait_for(&mut h, "the steered run", |a| !a.busy);
    let app = h.state();
    let steered = app.steered.as_ref().expect("a steered run");
    let slot = steered.slot_of(5).unwrap();
    assert!(
        steered.positions_of(slot, 15).is_empty(),
        "a masked expert was chosen"
    );
    assert!(!app
        .baseline
        .as_ref()
        .unwrap()
        .positions_of(slot, 15)
        .is_empty());
    assert!(h.get_all_by_label("steered").count() >= 1);
    // Where the steered text departs from the baseline is named, with both tokens.
    let base = h.state().baseline.clone().unwrap();
    let steered = h.state().steered.clone().unwrap();
    match first_divergence(&base.output_tokens, &steered.output_tokens) {
        Some(d) => {
            let quote = |v: &[String]| v.get(d).map_or("(ended)".to_string(), |t| format!("{t:?}"));
            h.get_by_label_contains(&format!(
                "first divergence at generated token {d}: baseline {}, steered {}",
                quote(&base.output_tokens),
                quote(&steered.output_tokens)
            ));
        }
        None => {
            assert_eq!(base.output, steered.output);
            h.get_by_label("same tokens as the baseline");
        }
    }

    // Teacher forcing: the baseline's own tokens scored by the steered model, one value each;
    // masking the refusal expert makes the refusal less likely somewhere.
    let forced = h.state().forced.clone().expect("teacher forcing");
    assert_eq!(forced.len(), base.output_tokens.len());
    assert!(forced.iter().any(|t| t.delta() < -0.01), "{forced:?}");
    assert!(forced.iter().all(|t| t.kl >= 0.0));
    h.get_by_label_contains("teacher forcing (the baseline's");
    // Lined up with the tokens: the routing the mask changed before each of them. The masked
    // expert leaves layer 5 wherever the baseline chose it, and no layer before 5 changes.
    let rerouted: Vec<_> = forced.iter().flat_map(|t| &t.rerouted).collect();
    assert!(rerouted.iter().any(|r| r.layer == 5 && r.removed == [15]));
    assert!(rerouted.iter().all(|r| r.layer >= 5), "{rerouted:?}");
    let changed = forced.iter().filter(|t| !t.rerouted.is_empty()).count();
    h.get_by_label_contains(&format!(
        "routing changed before {changed} of {} tokens",
        forced.len()
    ));

    // The heatmap can show the steered routing, with the changes outlined.
    h.get_by_label("steered (changes outlined)").click();
    h.run_steps(2);
    assert_eq!(h.state().heat_run, Which::Steered);
    h.get_by_label("routing heatmap");
}

#[test]
fn bad_model_folder_and_bad_files_are_messages_in_the_window() {
    let mut h = harness(PathBuf::from("/nonexistent/model"));
    wait_for(&mut h, "the load error", |a| a.status.1);
    assert!(
        h.state().status.0.contains("/nonexistent/model"),
        "{}",
        h.state().status.0
    );
    assert!(h.state().model.is_none());
    // A later message does not hide why the model is missing, and the log keeps both.
    h.state_mut().prompt_set_path = "/nonexistent/set.jsonl".into();
    h.get_by_label("Load set").click();
    h.run_steps(2);
    assert!(
        h.state().status.0.contains("set.jsonl"),
        "{}",
        h.state().status.0
    );
    h.get_by_label_contains("not loaded: ");
    assert!(h.query_by_label_contains("/nonexistent/model").is_some());
    h.get_by_label("log (2 errors)").click();
    h.run_steps(2);
    h.get_by_label("Copy all").click();
    h.run_steps(1);
    let copied = copied_text(&h).expect("the log copied");
    assert!(
        copied.contains("loading /nonexistent/model")
            && copied.contains("error: ")
            && copied.contains("set.jsonl"),
        "{copied}"
    );

    let mut h = harness(embedded_model());
    wait_for(&mut h, "the model", |a| a.model.is_some());
    h.state_mut().profile_path = "/nonexistent/profile.toml".into();
    h.get_by_label("Load").click();
    h.run_steps(2);
    let (msg, err) = h.state().status.clone();
    assert!(err && msg.contains("profile.toml"), "{msg}");
    h.state_mut().ranking_path = format!("{}/config.json", embedded_model().display());
    h.get_by_label("Load ranking").click();
    h.run_steps(2);
    let (msg, err) = h.state().status.clone();
    assert!(err && msg.contains("config.json"), "{msg}");
    assert!(h.state().ranking.is_none());
}

#[test]
fn a_ranking_colours_the_grid_and_fills_the_inspector() {
    let mut h = harness(embedded_model());
    wait_for(&mut h, "the model", |a| a.model.is_some());
    let ranking = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/findings/refusal-attribution-experiment/ranking.parquet"
    );
    h.state_mut().ranking_path = ranking.into();
    h.get_by_label("Load ranking").click();
    h.run_steps(2);
    let app = h.state();
    assert!(!app.status.1, "{}", app.status.0);
    let r = app.ranking.as_ref().expect("a ranking");
    assert_eq!(r.order[0], (5, 15));
    h.get_by_label("L5:E15").click();
    h.run_steps(2);
    h.get_by_label("ablation_drop");
    h.get_by_label_contains("top experts by ablation_drop");
    // Rank columns (1 = best) are not offered as colours.
    let columns = &h.state().ranking.as_ref().expect("a ranking").columns;
    assert!(columns.iter().any(|c| c == "ablation_rank"));
    let count =
        |h: &Harness<'static, MoescopeApp>, label: &str| h.query_all_by_label(label).count();
    let (drops, ranks) = (count(&h, "first_order_drop"), count(&h, "ablation_rank"));
    h.query_all_by_role(eframe::egui::accesskit::Role::ComboBox)
        .find(|n| n.accesskit_node().value().as_deref() == Some("ablation_drop"))
        .expect("the ranking column list")
        .click();
    h.run_steps(2);
    // The open list adds the other score, not the ranks (the inspector lists every column).
    assert_eq!(count(&h, "first_order_drop"), drops + 1);
    assert_eq!(count(&h, "ablation_rank"), ranks);

    // A second ranking takes the grid; the first stays in the inspector with its scores, and
    // Use brings it back.
    h.key_press(eframe::egui::Key::Escape);
    h.run_steps(1);
    h.state_mut().ranking_path = repo("docs/findings/refusal-rd.parquet")
        .display()
        .to_string();
    h.get_by_label("Load ranking").click();
    h.run_steps(2);
    let app = h.state();
    assert!(!app.status.1, "{}", app.status.0);
    assert!(app
        .ranking
        .as_ref()
        .unwrap()
        .path
        .ends_with("refusal-rd.parquet"));
    assert_eq!(app.earlier_rankings.len(), 1);
    h.get_by_label("in ranking.parquet:");
    h.get_by_label("Use").click();
    h.run_steps(2);
    let app = h.state();
    assert!(app
        .ranking
        .as_ref()
        .unwrap()
        .path
        .ends_with("ranking.parquet"));
    assert!(app.earlier_rankings[0].path.ends_with("refusal-rd.parquet"));
    assert_eq!(app.earlier_rankings.len(), 1, "each source kept once");
}

#[test]
fn a_recording_is_browsed_sequence_by_sequence_and_counts_an_experts_tokens() {
    let mut h = harness(embedded_model());
    wait_for(&mut h, "the model", |a| a.model.is_some());
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/findings/refusal-experiment/detect-records"
    );
    h.state_mut().recording_path = dir.into();
    h.get_by_label("Open recording").click();
    h.run_steps(2);
    let rec = h.state().recording.clone().expect("the recording opens");
    let first = rec.sequences[0].clone();
    h.get_all_by_label_contains(&first.seq_id)
        .next()
        .expect("the sequence list shows the first sequence")
        .click();
    h.run_steps(1);
    wait_for(&mut h, "the recorded sequence", |a| !a.busy);
    let app = h.state();
    assert_eq!(app.browsing, Some(first.seq_index));
    let view = app.baseline.as_ref().expect("the sequence is shown");
    assert_eq!(view.prompt_len, first.prompt_tokens as usize);
    assert_eq!(
        view.positions(),
        (first.prompt_tokens + first.generated_tokens) as usize
    );
    assert!(view
        .choices
        .iter()
        .all(|layer| layer.len() == view.positions() && layer.iter().all(|c| c.len() == 2)));
    // The main view says it shows a recording, not a generation.
    h.get_by_label_contains(&format!(
        "showing recorded sequence {} of {dir}",
        first.seq_index
    ));

    h.get_by_label("L0:E11").click();
    h.run_steps(2);
    h.get_by_label("Expert page from recording").click();
    h.run_steps(1);
    wait_for(&mut h, "the expert page", |a| !a.busy);
    let page = h.state().expert_page.clone().expect("a page");
    assert_eq!(page.key, (0, 11));
    assert!(!page.tokens.is_empty());
    assert!(page.tokens.windows(2).all(|w| w[0].routed >= w[1].routed));
    assert!(page.tokens.iter().all(|t| t.routed <= t.seen));
    // Every token of the recording is counted once under its sequence's label.
    let rec = h.state().recording.clone().unwrap();
    let total: u64 = page.labels.iter().map(|l| l.tokens).sum();
    let expected: u64 = rec
        .sequences
        .iter()
        .map(|s| u64::from(s.prompt_tokens + s.generated_tokens))
        .sum();
    assert_eq!(total, expected);
    let routed: u64 = page.labels.iter().map(|l| l.routed).sum();
    assert!(routed > 0 && page.tokens.iter().map(|t| t.routed).sum::<u64>() <= routed);
    // Contexts: heaviest first, the token among its neighbours; a click opens its sequence.
    assert!(!page.contexts.is_empty() && page.contexts.len() <= 8);
    assert!(page.contexts.windows(2).all(|w| w[0].weight >= w[1].weight));
    let c = page.contexts.last().unwrap().clone();
    assert!(c.before.len() <= 6 && c.after.len() <= 6 && !c.token.is_empty());
    let line = format!(
        "{}{}{}  {:.2} · seq {}",
        one_line(&c.before.concat()),
        one_line(&c.token),
        one_line(&c.after.concat()),
        c.weight,
        c.seq_index
    );
    h.get_by_label(&line).click();
    h.run_steps(1);
    wait_for(&mut h, "the context's sequence", |a| !a.busy);
    assert_eq!(h.state().browsing, Some(c.seq_index));
    let shown = h.state().baseline.clone().unwrap();
    assert_eq!(shown.tokens[c.position as usize], c.token);
}

#[test]
fn set_top_k_shows_each_layers_own_number_of_experts() {
    let mut h = harness(embedded_model());
    wait_for(&mut h, "the model", |a| a.model.is_some());
    let prompt = h.get_by_role(eframe::egui::accesskit::Role::MultilineTextInput);
    prompt.focus();
    h.run_steps(1);
    h.key_press_modifiers(eframe::egui::Modifiers::COMMAND, eframe::egui::Key::A);
    h.get_by_role(eframe::egui::accesskit::Role::MultilineTextInput)
        .type_text("The capital of France is");
    h.run_steps(2);
    // Layer 3 picked in the combo box, k = 1 in the drag value, then the button.
    h.state_mut().top_k_edit = (3, 1);
    h.run_steps(1);
    h.get_by_label("Set top-k").click();
    h.run_steps(2);
    assert_eq!(h.state().steering.items().len(), 1);
    h.get_by_label("Generate").click();
    h.run_steps(1);
    wait_for(&mut h, "the runs", |a| !a.busy && a.steered.is_some());
    let app = h.state();
    let steered = app.steered.as_ref().expect("a steered run");
    let baseline = app.baseline.as_ref().expect("a baseline run");
    let top_k = app.model.as_ref().unwrap().config.moe.top_k;
    assert!(top_k > 1);
    let slot = steered.slot_of(3).unwrap();
    let other = steered.slot_of(4).unwrap();
    for p in 0..steered.positions() {
        assert_eq!(steered.choice(slot, p).len(), 1, "position {p} of layer 3");
        assert_eq!(
            steered.choice(other, p).len(),
            top_k,
            "position {p} of layer 4"
        );
        let weights: f32 = steered.choice(other, p).iter().map(|c| c.1).sum();
        assert!(weights > 0.0 && weights.is_finite());
    }
    for p in 0..baseline.positions() {
        assert_eq!(baseline.choice(slot, p).len(), top_k);
    }
    // The grid of the steered run shows the one chosen expert of layer 3 at the last token.
    let last = steered.positions() - 1;
    let (expert, _) = steered.choice(slot, last)[0];
    assert!(!steered.positions_of(slot, expert).is_empty());
}

#[test]
fn stale_results_are_marked_unsaved_edits_are_kept_and_profiles_take_the_given_name() {
    use eframe::egui::accesskit::Role;
    let mut h = harness(embedded_model());
    wait_for(&mut h, "the model", |a| a.model.is_some());
    h.get_by_label("Generate").click();
    h.run_steps(1);
    wait_for(&mut h, "the baseline", |a| !a.busy);
    assert!(h.query_by_label_contains("stale:").is_none());

    h.state_mut().prompt = "Tell me a story.".into();
    h.run_steps(2);
    h.get_by_label_contains("stale: the prompt changed since this run");
    h.get_by_label("L5:E15").click();
    h.run_steps(2);
    h.get_by_label("Mask").click();
    h.run_steps(2);
    h.get_by_label_contains("stale: the prompt and steering changed");

    // The name typed is the name saved.
    h.query_all_by_label("profile name")
        .find(|n| n.accesskit_node().role() == Role::TextInput)
        .expect("the profile name field")
        .focus();
    h.run_steps(1);
    h.key_press_modifiers(eframe::egui::Modifiers::COMMAND, eframe::egui::Key::A);
    h.query_all_by_label("profile name")
        .find(|n| n.accesskit_node().role() == Role::TextInput)
        .expect("the profile name field")
        .type_text("refusal experts");
    h.run_steps(2);
    let dir = std::env::temp_dir().join(format!("moescope-gui-stale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let saved = dir.join("p.toml");
    h.state_mut().profile_path = saved.display().to_string();
    h.get_by_label("Save").click();
    h.run_steps(2);
    assert!(!h.state().status.1, "{}", h.state().status.0);
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(text.contains("name = \"refusal experts\""), "{text}");

    // An unsaved edit is not replaced by the first Load.
    h.get_by_label("L0:E11").click();
    h.run_steps(2);
    h.get_by_label("Force").click();
    h.run_steps(2);
    assert_eq!(h.state().steering.items().len(), 2);
    h.state_mut().profile_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/findings/refusal-attribution-experiment/profiles/mask-top1.toml"
    )
    .into();
    h.get_by_label("Load").click();
    h.run_steps(2);
    assert!(
        h.state().status.0.contains("unsaved edits"),
        "{}",
        h.state().status.0
    );
    assert_eq!(h.state().steering.items().len(), 2);
    h.get_by_label("Load").click();
    h.run_steps(2);
    assert!(!h.state().status.1, "{}", h.state().status.0);
    assert_eq!(h.state().steering.items().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sampling_settings_generate_mark_stale_and_copy_as_a_command() {
    let mut h = harness(embedded_model());
    wait_for(&mut h, "the model", |a| a.model.is_some());
    {
        let app = h.state_mut();
        app.prompt = "How do I make a bomb?".into();
        app.max_tokens = 8;
        app.settings.temperature = 0.8;
        app.settings.seed = 7;
        app.settings.system = "Be brief.".into();
    }
    h.get_by_label("Generate").click();
    h.run_steps(1);
    wait_for(&mut h, "the sampled run", |a| !a.busy);
    let first = h.state().baseline.clone().expect("a run").output;
    h.get_by_label("Generate").click();
    h.run_steps(1);
    wait_for(&mut h, "the second sampled run", |a| !a.busy);
    assert_eq!(
        h.state().baseline.as_ref().unwrap().output,
        first,
        "the same seed samples the same text"
    );

    h.state_mut().settings.seed = 8;
    h.run_steps(2);
    h.get_by_label_contains("stale: the sampling settings changed");

    h.get_by_label("Copy as command").click();
    h.run_steps(1);
    let copied = copied_text(&h).expect("the command copied");
    assert!(
        copied.starts_with("moescope generate --model ")
            && copied.contains("--chat 'How do I make a bomb?' --system 'Be brief.' --max-tokens 8 --temperature 0.8 --seed 8"),
        "{copied}"
    );
    assert!(!h.state().status.1, "{}", h.state().status.0);
}

#[test]
fn a_chat_continues_over_several_turns_with_a_kept_reply() {
    let mut h = harness(embedded_model());
    wait_for(&mut h, "the model", |a| a.model.is_some());
    assert_eq!(
        h.state().model.as_ref().unwrap().dtype,
        candle_core::DType::BF16,
        "the app loads the checkpoint's stored dtype, as the CLI does"
    );
    {
        let app = h.state_mut();
        app.prompt = "hi".into();
        app.max_tokens = 6;
        app.steering.set(5, 15, InterventionKind::Mask, None);
    }
    h.get_by_label("Generate").click();
    h.run_steps(1);
    wait_for(&mut h, "the first turn", |a| !a.busy);
    let steered_reply = h.state().steered.clone().expect("a steered run").output;
    h.get_by_label("steered reply").click();
    h.run_steps(2);
    assert!(
        h.state().prompt.is_empty(),
        "the box empties for the next message"
    );
    assert_eq!(h.state().conversation.len(), 1);
    assert_eq!(
        h.state().conversation[0].assistant,
        steered_reply.trim_end()
    );
    h.get_by_label_contains("stale: the prompt and conversation changed");
    h.get_by_label("chat: 1 earlier turns");

    h.state_mut().prompt = "and then?".into();
    h.get_by_label("Generate").click();
    h.run_steps(1);
    wait_for(&mut h, "the second turn", |a| !a.busy);
    let second = h.state().baseline.clone().expect("a run");
    let seen: String = second.tokens[..second.prompt_len].concat();
    let kept = steered_reply.trim_end();
    let expected = format!("user\nhi<|im_end|>\n<|im_start|>assistant\n{kept}<|im_end|>");
    assert!(
        seen.replace('Ċ', "\n")
            .replace('Ġ', " ")
            .contains(&expected),
        "the second prompt holds the first exchange: {seen:?}"
    );

    h.get_by_label("Copy as command").click();
    h.run_steps(1);
    let copied = copied_text(&h).expect("the command copied");
    assert!(
        copied.contains("--dtype bf16 --chat hi --reply ")
            && copied.contains("--chat 'and then?' --max-tokens 6"),
        "{copied}"
    );

    h.get_by_label("Clear chat").click();
    h.run_steps(2);
    assert!(h.state().conversation.is_empty());
}

/// A file dropped on the window, as the windowing integration hands it over.
#[derive(Debug)]
struct Dropped(PathBuf);

impl eframe::egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn dropped_files_open_by_what_they_are() {
    let mut h = harness(embedded_model());
    wait_for(&mut h, "the model", |a| a.model.is_some());
    let drop_file = |h: &mut Harness<'static, MoescopeApp>, path: PathBuf| {
        h.input_mut()
            .dropped_files
            .push(std::sync::Arc::new(Dropped(path)));
        h.run_steps(2);
    };
    drop_file(&mut h, common::repo("datasets/examples/smoke.jsonl"));
    drop_file(&mut h, common::repo("examples/steer-default-model.toml"));
    drop_file(
        &mut h,
        common::repo("docs/findings/refusal-attribution-experiment/ranking.parquet"),
    );
    let app = h.state();
    assert_eq!(app.prompt_set.len(), 6);
    assert!(!app.steering.is_empty());
    assert!(app.ranking.is_some());
    assert!(!app.status.1, "{}", app.status.0);
    drop_file(&mut h, common::repo("README.md"));
    assert!(h.state().status.1);
    assert!(h.state().status.0.contains("drop a prompt set (.jsonl)"));
}

#[test]
fn the_grid_exports_as_svg() {
    let mut h = harness(embedded_model());
    wait_for(&mut h, "the model", |a| a.model.is_some());
    h.state_mut().ranking_path =
        common::repo("docs/findings/refusal-attribution-experiment/ranking.parquet")
            .display()
            .to_string();
    h.get_by_label("Load ranking").click();
    h.run_steps(2);
    let out = std::env::temp_dir().join(format!("moescope-grid-{}.svg", std::process::id()));
    h.state_mut().export_path = out.display().to_string();
    h.get_by_label("Export SVG").click();
    h.run_steps(2);
    assert!(!h.state().status.1, "{}", h.state().status.0);
    let svg = std::fs::read_to_string(&out).expect("the SVG written");
    std::fs::remove_file(&out).unwrap();
    assert!(
        svg.starts_with("<svg") || svg.contains("<svg"),
        "{svg:.200}"
    );
    assert!(svg.contains("ablation_drop"));
    // A folder that does not exist is a message, not a crash.
    h.state_mut().export_path = "/nonexistent/dir/grid.svg".into();
    h.get_by_label("Export SVG").click();
    h.run_steps(2);
    assert!(h.state().status.1);
}

#[test]
fn another_model_opens_in_the_window() {
    let mut h = harness(embedded_model());
    wait_for(&mut h, "the model", |a| a.model.is_some());
    h.get_by_label("Generate").click();
    h.run_steps(1);
    wait_for(&mut h, "a run", |a| !a.busy);
    assert!(h.state().baseline.is_some());

    let fixture = common::repo("tests/fixtures/deepseek_v2_routing");
    h.state_mut().model_path = fixture.display().to_string();
    h.get_by_label("Open model").click();
    h.run_steps(1);
    assert!(h.state().baseline.is_none(), "results of the old model go");
    wait_for(&mut h, "the other model", |a| {
        a.model.is_some() || a.status.1
    });
    let model = h.state().model.clone().expect("the fixture loads");
    assert_eq!(model.dir, fixture);
    assert_eq!(model.config.moe.num_experts, 160);
    h.get_by_label_contains("160 experts");

    // A folder without a checkpoint is a message that stays, not a crash.
    h.state_mut().model_path = "/nonexistent/model".into();
    h.get_by_label("Open model").click();
    h.run_steps(1);
    wait_for(&mut h, "the load error", |a| a.load_error.is_some());
    assert!(h.state().model.is_none());
    // Dropping a checkpoint folder opens it.
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(embedded_model())));
    h.run_steps(1);
    wait_for(&mut h, "the embedded model again", |a| a.model.is_some());
    assert_eq!(h.state().model.as_ref().unwrap().config.moe.num_experts, 16);
    assert!(h.state().load_error.is_none());
}
