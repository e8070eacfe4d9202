//! Frame time of the expert grid (61 MoE layers × 256 experts) and the routing heatmap
//! (2,000 tokens × 61 layers) while panning, at several zooms: each frame is the app's CPU work
//! (layout, painting) plus tessellation into triangles, as eframe does before handing the
//! meshes to the GPU. The GPU's own draw time is not included.
//!
//! `cargo run --release -p moescope-gui --example view_bench`

use std::time::Instant;

use eframe::egui::{self, Event, MouseWheelSource, MouseWheelUnit, RawInput, TouchPhase};
use moescope_gui::grid::{expert_grid, GridValues, GridView};
use moescope_gui::heatmap::{routing_heatmap, HeatColour, HeatmapView};
use moescope_gui::run_view::RunView;
use moescope_gui::steering::SteeringList;

const LAYERS: usize = 61;
const EXPERTS: usize = 256;
const TOKENS: usize = 2000;
const FRAMES: usize = 300;
const SCREEN: egui::Vec2 = egui::vec2(1280.0, 800.0);

/// A deterministic spread of values in [0, 1).
fn hash01(a: usize, b: usize) -> f64 {
    let x = (a as u64 * 0x9E37_79B9_7F4A_7C15) ^ (b as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    let x = (x ^ (x >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Runs `FRAMES` frames of `ui`, each with a wheel event of `delta` over the view, and prints
/// the mean and 95th-percentile frame time.
fn bench(what: &str, delta: egui::Vec2, mut ui_fn: impl FnMut(&mut egui::Ui)) {
    let ctx = egui::Context::default();
    let mut times = Vec::with_capacity(FRAMES);
    let mut primitives = 0;
    for frame in 0..FRAMES + 10 {
        let mut input = RawInput {
            screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, SCREEN)),
            time: Some(frame as f64 / 60.0),
            ..Default::default()
        };
        input
            .events
            .push(Event::PointerMoved(egui::pos2(600.0, 200.0)));
        // Pan one way for half the frames and back for the other half.
        let sign = if (frame / (FRAMES / 2)).is_multiple_of(2) {
            -1.0
        } else {
            1.0
        };
        input.events.push(Event::MouseWheel {
            unit: MouseWheelUnit::Point,
            delta: delta * sign,
            phase: TouchPhase::Move,
            source: MouseWheelSource::Wheel,
            modifiers: egui::Modifiers::NONE,
        });
        let start = Instant::now();
        let output = ctx.run_ui(input, &mut ui_fn);
        let meshes = ctx.tessellate(output.shapes, output.pixels_per_point);
        let elapsed = start.elapsed().as_secs_f64() * 1e3;
        if frame >= 10 {
            times.push(elapsed);
            primitives = meshes
                .iter()
                .map(|m| match &m.primitive {
                    egui::epaint::Primitive::Mesh(mesh) => mesh.indices.len() / 3,
                    egui::epaint::Primitive::Callback(_) => 0,
                })
                .sum();
        }
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let p95 = times[times.len() * 95 / 100];
    println!(
        "{what:<44} mean {mean:6.2} ms  p95 {p95:6.2} ms  ({:5.0} frames/s at p95)  {primitives} triangles",
        1e3 / p95
    );
}

fn main() {
    let layers: Vec<usize> = (0..LAYERS).collect();
    let values: Vec<Vec<f64>> = (0..LAYERS)
        .map(|l| (0..EXPERTS).map(|e| hash01(l, e)).collect())
        .collect();
    let steering = SteeringList::default();
    for cell in [24.0, 12.0, 4.0] {
        let mut view = GridView::default();
        view.matrix.cell = cell;
        bench(
            &format!("grid {LAYERS}×{EXPERTS}, cell {cell} pt"),
            egui::vec2(-40.0, -25.0),
            |ui| {
                let grid = GridValues {
                    name: "share of tokens",
                    layers: &layers,
                    values: values.clone(),
                    signed: false,
                };
                expert_grid(ui, &mut view, &grid, &steering, Some((30, 100)));
            },
        );
    }

    let run = RunView {
        tokens: (0..TOKENS).map(|p| format!("tok{p}")).collect(),
        prompt_len: TOKENS / 2,
        output: String::new(),
        output_tokens: Vec::new(),
        layers: layers.clone(),
        num_experts: EXPERTS,
        choices: (0..LAYERS)
            .map(|l| {
                (0..TOKENS)
                    .map(|p| {
                        let first = (hash01(l, p) * EXPERTS as f64) as u32;
                        (0..8u32)
                            .map(|k| ((first + 31 * k) % EXPERTS as u32, 0.5 / (k + 1) as f32))
                            .collect()
                    })
                    .collect()
            })
            .collect(),
    };
    // A steered run whose every cell differs from the baseline: each cell gets an outline.
    let mut steered = run.clone();
    for layer in &mut steered.choices {
        for choice in layer {
            choice[0].0 = (choice[0].0 + 1) % EXPERTS as u32;
        }
    }
    for (cell, reference) in [(22.0, &run), (8.0, &run), (4.0, &run), (4.0, &steered)] {
        let mut view = HeatmapView::default();
        view.matrix.cell = cell;
        bench(
            &format!(
                "heatmap {TOKENS} tokens × {LAYERS}, cell {cell} pt{}",
                if std::ptr::eq(reference, &run) {
                    ""
                } else {
                    ", all differ"
                }
            ),
            egui::vec2(-60.0, -10.0),
            |ui| {
                routing_heatmap(
                    ui,
                    &mut view,
                    &run,
                    Some(reference),
                    HeatColour::Expert,
                    None,
                );
            },
        );
    }
}
