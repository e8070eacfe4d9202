//! A matrix of cells that stays usable at real model sizes (61 layers × 256 experts, or
//! thousands of tokens): only the visible cells are painted, the row labels (left) and column
//! labels (top) stay in place while the cells scroll under them, and the view pans with the
//! wheel, a drag, the scroll bars or the arrow keys and zooms with Ctrl+wheel or `+` / `-`
//! (`0` resets). The expert grid and the routing heatmap are both drawn with it.
//!
//! Cells are not widgets: one response covers them all and the cell under the pointer is
//! computed. When accessibility is on (screen readers, and the kittest tests), every visible
//! cell and row label also gets an accessible node named by the content, so tests find cells
//! as a user would.

use std::ops::Range;

use eframe::egui::{self, pos2, vec2, Color32, Id, Key, Painter, Rect, Response, Sense, Ui, Vec2};

/// Smallest cell edge, in points: 256 experts fit in 1,024 points.
pub const MIN_CELL: f32 = 4.0;
/// Largest cell edge, in points.
pub const MAX_CELL: f32 = 48.0;
/// Zoom factor of one `+` / `-` key press.
const KEY_ZOOM: f32 = 1.25;

/// Zoom and scroll of one matrix view. It lives in the app state, so the zoom survives frames
/// and other views can ask for a cell to be brought into view.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixState {
    /// Edge of one cell in points (the zoom).
    pub cell: f32,
    /// The cell edge `0` resets to.
    default_cell: f32,
    /// A cell (row, column) to scroll into view at the next frame.
    pub reveal: Option<(usize, usize)>,
    /// The scroll offset to apply at the next frame.
    pending_offset: Option<Vec2>,
    /// Scroll offset and size of the cell area at the last frame.
    offset: Vec2,
    cells_size: Vec2,
}

impl MatrixState {
    /// A view whose cells start `cell` points wide.
    pub fn new(cell: f32) -> Self {
        Self {
            cell,
            default_cell: cell,
            reveal: None,
            pending_offset: None,
            offset: Vec2::ZERO,
            cells_size: Vec2::ZERO,
        }
    }

    /// Multiplies the cell edge by `factor` (clamped to [`MIN_CELL`]..=[`MAX_CELL`]), keeping
    /// the point `anchor` of the cell area (relative to its top-left corner) where it is.
    pub fn zoom(&mut self, factor: f32, anchor: Vec2) {
        let old = self.cell;
        self.cell = (old * factor).clamp(MIN_CELL, MAX_CELL);
        let ratio = self.cell / old;
        let offset = (self.offset + anchor) * ratio - anchor;
        self.pending_offset = Some(offset.max(Vec2::ZERO));
    }

    /// The scroll offset at the last frame, in points.
    pub fn offset(&self) -> Vec2 {
        self.offset
    }

    /// The offset that shows cell (`row`, `col`) if it is out of view, centred.
    fn offset_revealing(&self, row: usize, col: usize) -> Option<Vec2> {
        let cell_min = vec2(col as f32, row as f32) * self.cell;
        let cell_max = cell_min + Vec2::splat(self.cell);
        let view = self.cells_size;
        let inside = |lo: f32, hi: f32, off: f32, len: f32| lo >= off && hi <= off + len;
        if inside(cell_min.x, cell_max.x, self.offset.x, view.x)
            && inside(cell_min.y, cell_max.y, self.offset.y, view.y)
        {
            return None;
        }
        let centre = cell_min + Vec2::splat(self.cell / 2.0) - view / 2.0;
        Some(centre.max(Vec2::ZERO))
    }
}

/// What a matrix shows: its size, and how each part is painted and named.
pub trait MatrixContent {
    /// Rows of cells.
    fn rows(&self) -> usize;
    /// Columns of cells.
    fn cols(&self) -> usize;
    /// The colour that fills cell (`row`, `col`).
    fn cell_fill(&self, row: usize, col: usize) -> Color32;
    /// Paints what goes over a cell's fill (a letter, an outline) into `rect`, the cell inset
    /// by the gap between cells. Most cells have none.
    fn paint_cell_mark(
        &self,
        marks: &mut CellMarks<'_>,
        rect: Rect,
        row: usize,
        col: usize,
        fill: Color32,
    );
    /// Paints the label of `row` into `rect` (at the left edge of the view).
    fn paint_row_label(&self, painter: &Painter, rect: Rect, row: usize);
    /// Paints the label of `col` into `rect` (at the top edge of the view).
    fn paint_col_label(&self, painter: &Painter, rect: Rect, col: usize);
    /// The accessible name of a cell, by which tests find it.
    fn cell_name(&self, row: usize, col: usize) -> String;
    /// The accessible name of a row label.
    fn row_name(&self, row: usize) -> String;
    /// The text shown while the pointer is over a cell.
    fn hover_text(&self, row: usize, col: usize) -> String;
}

/// Where cells' marks are painted: outlines and bars go into one mesh of plain quads (a
/// stroke shape per cell costs thirty times the triangles, and at the smallest zoom every one
/// of 15,000 visible cells can carry one); text goes through the painter.
pub struct CellMarks<'a> {
    /// The painter, clipped to the cells, for text and anything else.
    pub painter: &'a Painter,
    mesh: egui::Mesh,
}

impl CellMarks<'_> {
    /// Fills `rect` with `color`.
    pub fn bar(&mut self, rect: Rect, color: Color32) {
        self.mesh.add_colored_rect(rect, color);
    }

    /// Draws a `width`-point outline just inside `rect`.
    pub fn outline(&mut self, rect: Rect, width: f32, color: Color32) {
        let w = width.min(rect.width() / 2.0).min(rect.height() / 2.0);
        let (l, r, t, b) = (rect.left(), rect.right(), rect.top(), rect.bottom());
        self.bar(Rect::from_min_max(pos2(l, t), pos2(r, t + w)), color);
        self.bar(Rect::from_min_max(pos2(l, b - w), pos2(r, b)), color);
        self.bar(
            Rect::from_min_max(pos2(l, t + w), pos2(l + w, b - w)),
            color,
        );
        self.bar(
            Rect::from_min_max(pos2(r - w, t + w), pos2(r, b - w)),
            color,
        );
    }
}

/// The font of labels and cell marks in every matrix view.
pub fn label_font() -> egui::FontId {
    egui::FontId::monospace(10.0)
}

/// Every how many rows (or columns) a label fits when each label needs `needed` points and a
/// cell is `cell` points: 1, 2, 4, … so labels never overlap at any zoom.
pub fn label_stride(cell: f32, needed: f32) -> usize {
    let mut stride = 1usize;
    while (stride as f32) * cell < needed && stride < 1 << 20 {
        stride *= 2;
    }
    stride
}

/// The fixed parts of a matrix view.
#[derive(Debug, Clone, Copy)]
pub struct MatrixFrame {
    /// Distinguishes this view's scroll state and ids from other views'.
    pub id: &'static str,
    /// Width of the row-label band at the left.
    pub label_width: f32,
    /// Height of the column-label band at the top.
    pub header_height: f32,
    /// The most height the view takes; more rows scroll.
    pub max_height: f32,
}

/// What happened in the view this frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatrixOutput {
    /// The cell clicked, if any.
    pub clicked: Option<(usize, usize)>,
    /// The cell under the pointer, if any.
    pub hovered: Option<(usize, usize)>,
    /// The rows painted.
    pub visible_rows: Range<usize>,
    /// The columns painted.
    pub visible_cols: Range<usize>,
}

/// Where the cells lie on screen this frame.
struct Placement {
    /// Screen position of cell (0, 0)'s top-left corner.
    origin: egui::Pos2,
    cell: f32,
    /// The visible part of the cell area, on screen.
    cells: Rect,
}

impl Placement {
    fn cell_rect(&self, row: usize, col: usize) -> Rect {
        Rect::from_min_size(
            self.origin + vec2(col as f32, row as f32) * self.cell,
            Vec2::splat(self.cell),
        )
    }

    /// The range of indices whose cells overlap `lo..hi` (screen coordinates along one axis,
    /// from `start`, the screen position of index 0).
    fn span(&self, start: f32, lo: f32, hi: f32, count: usize) -> Range<usize> {
        let first = ((lo - start) / self.cell).floor().max(0.0) as usize;
        let end = ((hi - start) / self.cell).ceil().max(0.0) as usize;
        first.min(count)..end.min(count)
    }

    fn cell_at(&self, pos: egui::Pos2, rows: usize, cols: usize) -> Option<(usize, usize)> {
        if !self.cells.contains(pos) {
            return None;
        }
        let at = (pos - self.origin) / self.cell;
        let (row, col) = (at.y.floor() as usize, at.x.floor() as usize);
        (row < rows && col < cols).then_some((row, col))
    }
}

/// Draws `content` in a scrolling, zooming view.
pub fn show(
    ui: &mut Ui,
    frame: MatrixFrame,
    state: &mut MatrixState,
    content: &impl MatrixContent,
) -> MatrixOutput {
    let (rows, cols) = (content.rows(), content.cols());
    if let Some((row, col)) = state.reveal.take() {
        if let Some(offset) = state.offset_revealing(row.min(rows), col.min(cols)) {
            state.pending_offset = Some(offset);
        }
    }
    let mut area = egui::ScrollArea::both()
        .id_salt(frame.id)
        .max_height(frame.max_height)
        .auto_shrink([false, true]);
    if let Some(offset) = state.pending_offset.take() {
        // Clamped here, so the area does not spring back from past its end.
        let end = (vec2(cols as f32, rows as f32) * state.cell - state.cells_size).max(Vec2::ZERO);
        area = area.scroll_offset(offset.clamp(Vec2::ZERO, end));
    }
    let cell = state.cell;
    let id = ui.scope_id().with(frame.id);
    let scrolled = area.show_viewport(ui, |ui, _viewport| {
        let size = vec2(
            frame.label_width + cols as f32 * cell,
            frame.header_height + rows as f32 * cell,
        );
        let (content_rect, _) = ui.allocate_exact_size(size, Sense::hover());
        let visible = ui.clip_rect().intersect(content_rect);
        let placement = Placement {
            origin: content_rect.min + vec2(frame.label_width, frame.header_height),
            cell,
            cells: Rect::from_min_max(
                visible.min + vec2(frame.label_width, frame.header_height),
                visible.max,
            ),
        };
        paint(ui, id, frame, &placement, visible, content, rows, cols)
    });
    state.offset = scrolled.state.clamped_offset();
    let inner_size = scrolled.inner_rect.size();
    state.cells_size = (inner_size - vec2(frame.label_width, frame.header_height)).max(Vec2::ZERO);
    let (output, response) = scrolled.inner;
    handle_input(ui, &response, state);
    output
}

/// Paints the visible cells, then the label bands over them; returns what the pointer did.
#[allow(clippy::too_many_arguments)]
fn paint(
    ui: &mut Ui,
    id: Id,
    frame: MatrixFrame,
    placement: &Placement,
    visible: Rect,
    content: &impl MatrixContent,
    rows: usize,
    cols: usize,
) -> (MatrixOutput, Response) {
    let cells = placement.cells;
    let row_range = placement.span(placement.origin.y, cells.top(), cells.bottom(), rows);
    let col_range = placement.span(placement.origin.x, cells.left(), cells.right(), cols);
    let gap = if placement.cell >= 8.0 { 1.0 } else { 0.0 };
    let cell_painter = ui.painter_at(cells);
    // Fills as one mesh of plain quads: at the smallest zoom 15,000 cells are visible, and
    // a shape per cell (rounded, anti-aliased) costs ten times the triangles.
    let count = row_range.len() * col_range.len();
    let mut mesh = egui::Mesh::default();
    mesh.reserve_vertices(4 * count);
    mesh.reserve_triangles(2 * count);
    let mut fills = Vec::with_capacity(count);
    for row in row_range.clone() {
        for col in col_range.clone() {
            let fill = content.cell_fill(row, col);
            mesh.add_colored_rect(placement.cell_rect(row, col).shrink(gap / 2.0), fill);
            fills.push(fill);
        }
    }
    cell_painter.add(egui::Shape::mesh(mesh));
    let mut marks = CellMarks {
        painter: &cell_painter,
        mesh: egui::Mesh::default(),
    };
    let cells_at = row_range
        .clone()
        .flat_map(|row| col_range.clone().map(move |col| (row, col)));
    for ((row, col), fill) in cells_at.zip(fills) {
        let rect = placement.cell_rect(row, col).shrink(gap / 2.0);
        content.paint_cell_mark(&mut marks, rect, row, col, fill);
    }
    cell_painter.add(egui::Shape::mesh(marks.mesh));
    let response = ui.interact(cells, id.with("cells"), Sense::click_and_drag());
    response
        .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Grid, true, frame.id.to_string()));
    let accessible = ui
        .ctx()
        .accesskit_node_builder(response.id, |_| ())
        .is_some();

    // The label bands, painted over any cells scrolled beneath them.
    let band_fill = ui.visuals().panel_fill;
    let label_painter = ui.painter_at(visible);
    let row_band = Rect::from_min_max(
        pos2(visible.left(), cells.top()),
        pos2(cells.left(), visible.bottom()),
    );
    let col_band = Rect::from_min_max(
        pos2(cells.left(), visible.top()),
        pos2(visible.right(), cells.top()),
    );
    label_painter.rect_filled(row_band, 0.0, band_fill);
    label_painter.rect_filled(col_band, 0.0, band_fill);
    label_painter.rect_filled(Rect::from_min_max(visible.min, cells.min), 0.0, band_fill);
    let row_painter = ui.painter_at(row_band);
    for row in row_range.clone() {
        let y = placement.cell_rect(row, 0).y_range();
        let rect = Rect::from_x_y_ranges(row_band.x_range(), y);
        content.paint_row_label(&row_painter, rect, row);
    }
    let col_painter = ui.painter_at(col_band);
    for col in col_range.clone() {
        let x = placement.cell_rect(0, col).x_range();
        let rect = Rect::from_x_y_ranges(x, col_band.y_range());
        content.paint_col_label(&col_painter, rect, col);
    }
    if accessible {
        add_accessible_nodes(ui, id, placement, row_band, content, &row_range, &col_range);
    }

    let hovered = response
        .hover_pos()
        .and_then(|pos| placement.cell_at(pos, rows, cols));
    let clicked = if response.clicked() {
        response
            .interact_pointer_pos()
            .and_then(|pos| placement.cell_at(pos, rows, cols))
    } else {
        None
    };
    let response = match hovered {
        Some((row, col)) => response.on_hover_text_at_pointer(content.hover_text(row, col)),
        None => response,
    };
    let output = MatrixOutput {
        clicked,
        hovered,
        visible_rows: row_range,
        visible_cols: col_range,
    };
    (output, response)
}

/// One accessible node per visible cell and row label (only built when accessibility is on).
fn add_accessible_nodes(
    ui: &Ui,
    id: Id,
    placement: &Placement,
    row_band: Rect,
    content: &impl MatrixContent,
    rows: &Range<usize>,
    cols: &Range<usize>,
) {
    for row in rows.clone() {
        let y = placement.cell_rect(row, 0).y_range();
        let rect = Rect::from_x_y_ranges(row_band.x_range(), y).intersect(row_band);
        let label = ui.interact(rect, id.with(("row", row)), Sense::hover());
        let name = content.row_name(row);
        label.widget_info(|| egui::WidgetInfo::labeled(egui::Role::RowHeader, true, &name));
        for col in cols.clone() {
            let rect = placement.cell_rect(row, col).intersect(placement.cells);
            let cell = ui.interact(rect, id.with((row, col)), Sense::hover());
            let name = content.cell_name(row, col);
            cell.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &name));
        }
    }
}

/// A drag pans with the pointer; arrow keys pan by a cell (with Shift by a view); `+` / `-`
/// zoom about the view's centre, Ctrl+wheel about the pointer; `0` resets the zoom. Keys act
/// while the view has the keyboard (it takes it when clicked or dragged) or while the pointer
/// is over it and no other widget has the keyboard.
fn handle_input(ui: &Ui, response: &Response, state: &mut MatrixState) {
    if response.dragged() {
        let base = state.pending_offset.unwrap_or(state.offset);
        state.pending_offset = Some((base - response.drag_delta()).max(Vec2::ZERO));
    }
    // A click or drag gives the view the keyboard (away from the prompt box), and while it
    // has it the arrow keys pan instead of moving the focus to another widget.
    if response.clicked() || response.drag_started() {
        response.request_focus();
    }
    let focused = response.has_focus();
    if focused {
        let filter = egui::EventFilter {
            horizontal_arrows: true,
            vertical_arrows: true,
            ..Default::default()
        };
        ui.memory_mut(|m| m.set_focus_lock_filter(response.id, filter));
    }
    let hovered = response.hover_pos();
    if !focused && (hovered.is_none() || ui.ctx().egui_wants_keyboard_input()) {
        return;
    }
    let centre = state.cells_size / 2.0;
    let pointer = hovered.map_or(centre, |p| p - response.rect.min);
    let (zoom_delta, keys) = ui.input(|i| {
        let pressed = |k: Key| i.key_pressed(k);
        (
            i.zoom_delta(),
            [
                pressed(Key::ArrowLeft),
                pressed(Key::ArrowRight),
                pressed(Key::ArrowUp),
                pressed(Key::ArrowDown),
                pressed(Key::Plus) || pressed(Key::Equals),
                pressed(Key::Minus),
                pressed(Key::Num0),
                i.modifiers.shift,
            ],
        )
    });
    let [left, right, up, down, zoom_in, zoom_out, reset, shift] = keys;
    if zoom_delta != 1.0 {
        state.zoom(zoom_delta, pointer);
    } else if zoom_in {
        state.zoom(KEY_ZOOM, centre);
    } else if zoom_out {
        state.zoom(1.0 / KEY_ZOOM, centre);
    } else if reset {
        state.zoom(state.default_cell / state.cell, centre);
    }
    let step = if shift {
        state.cells_size
    } else {
        Vec2::splat(state.cell)
    };
    let pan = vec2(
        f32::from(u8::from(right)) - f32::from(u8::from(left)),
        f32::from(u8::from(down)) - f32::from(u8::from(up)),
    ) * step;
    if pan != Vec2::ZERO {
        let base = state.pending_offset.unwrap_or(state.offset);
        state.pending_offset = Some((base + pan).max(Vec2::ZERO));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoom_keeps_the_anchor_in_place_and_stays_in_bounds() {
        let mut s = MatrixState::new(10.0);
        s.offset = vec2(100.0, 40.0);
        s.zoom(2.0, vec2(50.0, 20.0));
        assert_eq!(s.cell, 20.0);
        // The content point under the anchor was (150, 60) at 10 pt; at 20 pt it is (300, 120)
        // and the anchor is still 50, 20 from the corner.
        assert_eq!(s.pending_offset, Some(vec2(250.0, 100.0)));
        s.zoom(100.0, Vec2::ZERO);
        assert_eq!(s.cell, MAX_CELL);
        s.zoom(0.0001, Vec2::ZERO);
        assert_eq!(s.cell, MIN_CELL);
    }

    #[test]
    fn label_stride_is_the_smallest_power_of_two_that_fits() {
        assert_eq!(label_stride(24.0, 12.0), 1);
        assert_eq!(label_stride(11.0, 12.0), 2);
        assert_eq!(label_stride(4.0, 12.0), 4);
        assert_eq!(label_stride(4.0, 22.0), 8);
        assert_eq!(label_stride(0.0, 1.0), 1 << 20);
    }

    #[test]
    fn reveal_scrolls_only_when_the_cell_is_out_of_view() {
        let mut s = MatrixState::new(10.0);
        s.cells_size = vec2(200.0, 100.0);
        assert_eq!(s.offset_revealing(2, 3), None);
        let o = s.offset_revealing(60, 255).expect("out of view");
        assert_eq!(o, vec2(2555.0 - 100.0, 605.0 - 50.0));
        s.offset = o;
        assert_eq!(s.offset_revealing(60, 255), None);
    }

    #[test]
    fn spans_cover_partly_visible_cells_and_stop_at_the_edges() {
        let p = Placement {
            origin: pos2(100.0, 50.0),
            cell: 10.0,
            cells: Rect::from_min_max(pos2(100.0, 50.0), pos2(305.0, 120.0)),
        };
        assert_eq!(p.span(100.0, 100.0, 305.0, 256), 0..21);
        assert_eq!(p.span(100.0, 100.0, 305.0, 7), 0..7);
        assert_eq!(p.span(-2455.0, 100.0, 305.0, 256), 255..256);
        assert_eq!(p.cell_at(pos2(104.0, 51.0), 61, 256), Some((0, 0)));
        assert_eq!(p.cell_at(pos2(99.0, 51.0), 61, 256), None);
        assert_eq!(p.cell_at(pos2(304.0, 119.0), 6, 20), None);
    }
}
