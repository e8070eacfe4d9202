//! The expert grid (layer × expert, coloured by the current prompt, a recording or a ranking) and the plots beside it.

use eframe::egui::{self, Ui};

use std::path::{Path, PathBuf};

use moescope_analysis::plot::{heatmap, Cell};
use moescope_analysis::OutputSet;

use crate::error::{require_path, Result};
use crate::file_dialog::{Pick, PickKind};
use crate::grid::{expert_grid, GridValues};
use crate::plots::{load_plot, ranking_plot};
use crate::run_view::RunView;
use crate::snapshot::View;
use crate::state::{GridSource, MoescopeApp};
use crate::widgets::path_row;

impl MoescopeApp {
    pub(crate) fn experts(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            ui.radio_value(
                &mut self.grid_source,
                GridSource::CurrentPrompt,
                "share of tokens (this prompt)",
            );
            ui.add_enabled_ui(self.ranking.is_some(), |ui| {
                ui.radio_value(&mut self.grid_source, GridSource::Ranking, "ranking");
            });
            if let Some(r) = &mut self.ranking {
                egui::ComboBox::from_id_salt("ranking column")
                    .selected_text(r.columns[r.selected].clone())
                    .show_ui(ui, |ui| {
                        for i in r.score_columns() {
                            ui.selectable_value(&mut r.selected, i, r.columns[i].clone());
                        }
                    })
                    .response
                    .on_hover_text(
                        "rank columns (1 = best) are not offered: they run the other way",
                    );
            }
        });
        if path_row(
            ui,
            &mut self.ranking_path,
            "ranking .parquet",
            320.0,
            &["Load ranking"],
            (
                &*self.picker,
                Pick {
                    kind: PickKind::OpenFile(&["parquet"]),
                    title: "Load a ranking",
                    then: 0,
                },
            ),
        )
        .is_some()
        {
            self.load_ranking();
        }
        let Some(model) = &self.model else { return };
        let layers = model.config.moe_layers();
        let experts = model.config.moe.num_experts;
        let grid = match (self.grid_source, &self.ranking) {
            (GridSource::Ranking, Some(r)) => GridValues {
                name: &r.columns[r.selected],
                layers: &layers,
                values: layers
                    .iter()
                    .map(|&l| (0..experts).map(|e| r.score(l, e)).collect())
                    .collect(),
                signed: true,
            },
            _ => GridValues {
                name: "share of tokens",
                layers: &layers,
                values: self
                    .baseline
                    .as_ref()
                    .map(RunView::load)
                    .unwrap_or_else(|| vec![vec![0.0; experts]; layers.len()]),
                signed: false,
            },
        };
        if let Some(c) = expert_grid(
            ui,
            &mut self.grid_view,
            &grid,
            &self.steering,
            self.selected,
        ) {
            self.selected = Some(c);
        }
        if path_row(
            ui,
            &mut self.export_path,
            "grid.svg",
            200.0,
            &["Export SVG"],
            (
                &*self.picker,
                Pick {
                    kind: PickKind::SaveFile("svg"),
                    title: "Export the grid as SVG",
                    then: 0,
                },
            ),
        )
        .is_some()
        {
            let path = PathBuf::from(self.export_path.trim());
            let written = require_path(&path, "the SVG file to write")
                .and_then(|()| export_grid_svg(&path, &grid));
            match written {
                Ok(()) => self.set_status(format!("wrote {}", path.display()), false),
                Err(e) => self.set_status(e.to_string(), true),
            }
        }
        if ui.button("Save grid PNG…").clicked() {
            self.export_png(ui.ctx(), View::Grid);
        }
    }

    pub(crate) fn plots(&mut self, ui: &mut Ui) {
        if ui.button("Save plots PNG…").clicked() {
            self.export_png(ui.ctx(), View::Plots);
        }
        ui.columns(2, |cols| {
            let layer = self.selected.map(|s| s.0);
            load_plot(
                &mut cols[0],
                self.baseline.as_ref(),
                self.steered.as_ref(),
                layer,
            );
            match &self.ranking {
                Some(r) => {
                    if let Some(clicked) = ranking_plot(&mut cols[1], r) {
                        self.selected = Some(clicked);
                    }
                }
                None => {
                    cols[1].weak("load a ranking to see its top experts");
                }
            }
        });
    }
}

/// Writes the grid as shown (its values, not its zoom) as an SVG heatmap, the same plot
/// `moescope analyze` writes, named by what colours it.
fn export_grid_svg(path: &Path, grid: &GridValues<'_>) -> Result<()> {
    let cells: Vec<Cell> = grid
        .layers
        .iter()
        .zip(&grid.values)
        .flat_map(|(&layer, row)| {
            row.iter().enumerate().map(move |(expert, &value)| Cell {
                layer: layer as u32,
                expert: expert as u32,
                value,
            })
        })
        .collect();
    let mut set = OutputSet::new();
    heatmap(&mut set, path, grid.name, &cells, grid.signed)?;
    set.commit()?;
    Ok(())
}
