//! The expert grid and the routing heatmap at real model sizes (61 MoE layers × 256 experts,
//! 2,000 tokens), driven as a user would: only what is visible is built, the far corner is
//! reached with the keyboard and by dragging, labels stay in place while the cells scroll,
//! zoom fits every expert, and a selection made elsewhere scrolls the grid to it.

use eframe::egui::{self, accesskit::Role, Key, Modifiers};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use moescope_gui::grid::{expert_grid, GridValues, GridView};
use moescope_gui::heatmap::{routing_heatmap, HeatColour, HeatmapView};
use moescope_gui::matrix_view::MIN_CELL;
use moescope_gui::run_view::RunView;
use moescope_gui::steering::SteeringList;

const LAYERS: usize = 61;
const EXPERTS: usize = 256;
const TOKENS: usize = 2000;
const TOP_K: usize = 8;

/// A deterministic spread of values in [0, 1).
fn hash01(a: usize, b: usize) -> f64 {
    let x = (a as u64 * 0x9E37_79B9_7F4A_7C15) ^ (b as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    let x = (x ^ (x >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

struct GridScene {
    view: GridView,
    layers: Vec<usize>,
    values: Vec<Vec<f64>>,
    steering: SteeringList,
    selected: Option<(usize, usize)>,
    clicked: Option<(usize, usize)>,
    /// A text box above the grid, as the app's prompt box is.
    note: String,
}

fn grid_harness() -> Harness<'static, GridScene> {
    let scene = GridScene {
        view: GridView::default(),
        layers: (0..LAYERS).collect(),
        values: (0..LAYERS)
            .map(|l| (0..EXPERTS).map(|e| hash01(l, e)).collect())
            .collect(),
        steering: SteeringList::default(),
        selected: None,
        clicked: None,
        note: String::new(),
    };
    Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        // Scrolling animates for a few frames.
        .with_max_steps(60)
        .build_ui_state(
            |ui, s: &mut GridScene| {
                let label = ui.label("note");
                ui.text_edit_singleline(&mut s.note).labelled_by(label.id);
                let values = GridValues {
                    name: "share of tokens",
                    layers: &s.layers,
                    values: s.values.clone(),
                    signed: false,
                };
                if let Some(hit) = expert_grid(ui, &mut s.view, &values, &s.steering, s.selected) {
                    s.clicked = Some(hit);
                }
            },
            scene,
        )
}

/// Accessible cells built this frame (one per visible cell).
fn cell_count(h: &Harness<'_, impl Sized>) -> usize {
    h.query_all_by_role(Role::Button).count()
}

#[test]
fn the_grid_builds_only_visible_cells_and_the_far_corner_is_reached_by_keyboard() {
    let mut h = grid_harness();
    h.run();
    h.get_by_label("L0:E0");
    assert!(h.query_by_label("L60:E255").is_none());
    let visible = cell_count(&h);
    assert!(
        (100..3000).contains(&visible),
        "{visible} cells built of {}",
        LAYERS * EXPERTS
    );
    let first_label = h.get_by_label_contains("layer 0: top expert").rect();

    // Shift+arrows pan one view at a time while the pointer is over the cells.
    h.get_by_label("L0:E0").hover();
    h.run();
    for _ in 0..30 {
        if h.query_by_label("L60:E255").is_some() {
            break;
        }
        h.key_press_modifiers(Modifiers::SHIFT, Key::ArrowRight);
        h.key_press_modifiers(Modifiers::SHIFT, Key::ArrowDown);
        h.run();
    }
    assert!(h.query_by_label("L0:E0").is_none(), "the view did not move");
    let corner = h.get_by_label("L60:E255").rect();
    // The row labels stayed at the left edge while the cells moved under them.
    let last_label = h.get_by_label_contains("layer 60: top expert").rect();
    assert_eq!(last_label.min.x, first_label.min.x);
    assert!(last_label.max.x <= corner.min.x + 0.5);
    assert!(cell_count(&h) < 3000);

    h.get_by_label("L60:E255").click();
    h.run();
    assert_eq!(h.state().clicked, Some((60, 255)));
}

#[test]
fn dragging_the_grid_pans_it() {
    let mut h = grid_harness();
    h.run();
    let start = h.get_by_label("L10:E20").rect();
    let at = start.min + egui::vec2(4.0, 4.0);
    h.drag_at(at);
    h.run();
    for step in 1..=10 {
        h.hover_at(at - egui::vec2(30.0, 20.0) * step as f32);
        h.run();
    }
    h.drop_at(at - egui::vec2(300.0, 200.0));
    h.run();
    assert!(h.query_by_label("L0:E0").is_none(), "the drag did not pan");
    h.get_by_label("L20:E30");
    // A drag is not a click.
    assert_eq!(h.state().clicked, None);
}

#[test]
fn zooming_out_fits_every_expert_and_keys_zoom_back_in() {
    let mut h = grid_harness();
    h.state_mut().view.matrix.cell = MIN_CELL;
    h.run();
    h.get_by_label("L0:E255");
    h.get_by_label("L0:E0").hover();
    h.run();
    h.key_press(Key::Plus);
    h.run();
    assert_eq!(h.state().view.matrix.cell, MIN_CELL * 1.25);
    h.key_press(Key::Num0);
    h.run();
    assert_eq!(h.state().view.matrix.cell, GridView::default().matrix.cell);
}

#[test]
fn a_click_takes_the_keyboard_from_a_text_box() {
    let mut h = grid_harness();
    h.run();
    h.get_by_role(Role::TextInput).focus();
    h.run();
    h.get_by_label("L2:E3").hover();
    h.run();
    // The text box has the keyboard: `-` is typed, not a zoom.
    h.get_by_role(Role::TextInput).type_text("-");
    h.run();
    assert_eq!(h.state().note, "-");
    assert_eq!(h.state().view.matrix.cell, GridView::default().matrix.cell);
    h.get_by_label("L2:E3").click();
    h.run();
    h.key_press(Key::Minus);
    h.key_press(Key::ArrowRight);
    h.run();
    assert_eq!(h.state().note, "-");
    assert!(h.state().view.matrix.cell < GridView::default().matrix.cell);
    // The arrow panned the grid instead of moving the focus away.
    assert!(h.state().view.matrix.offset().x > 0.0);
}

#[test]
fn a_selection_made_elsewhere_scrolls_the_grid_to_it() {
    let mut h = grid_harness();
    h.run();
    assert!(h.query_by_label("L40:E200").is_none());
    h.state_mut().selected = Some((40, 200));
    h.run();
    h.get_by_label("L40:E200");
}

#[test]
fn one_outlier_saturates_in_the_robust_scale_and_the_legend_says_so() {
    let mut h = grid_harness();
    h.state_mut().values[3][7] = 1e6;
    h.run();
    // 1 of 15,616 values is above the 99th percentile's colour.
    h.get_by_label_contains("robust (p99) scale");
    h.get_by_label_contains("saturate");
    // The outlier still names its layer's top expert.
    h.get_by_label_contains("layer 3: top expert 7");
    h.state_mut().view.scale = moescope_gui::colors::ScaleKind::Log;
    h.run();
    h.get_by_label_contains("log scale, full colour at 1.000e6, dark below 1000.0000");
}

struct HeatScene {
    view: HeatmapView,
    run: RunView,
    clicked: Option<(usize, usize)>,
}

/// A 2,000-token run over 61 MoE layers with 8 experts per token.
fn long_run() -> RunView {
    let choices = (0..LAYERS)
        .map(|l| {
            (0..TOKENS)
                .map(|p| {
                    let first = (hash01(l, p) * EXPERTS as f64) as u32;
                    (0..TOP_K as u32)
                        .map(|k| ((first + 31 * k) % EXPERTS as u32, 0.5 / (k + 1) as f32))
                        .collect()
                })
                .collect()
        })
        .collect();
    RunView {
        tokens: (0..TOKENS).map(|p| format!("tok{p}")).collect(),
        prompt_len: 1500,
        output: String::new(),
        output_tokens: Vec::new(),
        layers: (0..LAYERS).collect(),
        num_experts: EXPERTS,
        choices,
    }
}

#[test]
fn the_heatmap_reaches_token_2000_of_61_layers_and_a_click_selects_its_expert() {
    let scene = HeatScene {
        view: HeatmapView::default(),
        run: long_run(),
        clicked: None,
    };
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        // Scrolling animates for a few frames.
        .with_max_steps(60)
        .build_ui_state(
            |ui, s: &mut HeatScene| {
                let hit = routing_heatmap(ui, &mut s.view, &s.run, None, HeatColour::Expert, None);
                if hit.is_some() {
                    s.clicked = hit;
                }
            },
            scene,
        );
    h.run();
    h.get_by_label("t0:L0");
    h.get_by_label_contains("2000 tokens (1500 prompt) × 61 MoE layers");
    assert!(h.query_by_label("t1999:L60").is_none());
    assert!(cell_count(&h) < 3000);

    h.state_mut().view.matrix.reveal = Some((60, 1999));
    h.run();
    h.get_by_label("t1999:L60").click();
    h.run();
    let first = h.state().run.choices[60][1999][0].0 as usize;
    assert_eq!(h.state().clicked, Some((60, first)));

    // End to start with the keyboard: Shift+Left pages back a view at a time.
    h.get_by_label("t1999:L60").hover();
    h.run();
    for _ in 0..200 {
        if h.query_by_label("t0:L60").is_some() {
            break;
        }
        h.key_press_modifiers(Modifiers::SHIFT, Key::ArrowLeft);
        h.run();
    }
    h.get_by_label("t0:L60");
}
