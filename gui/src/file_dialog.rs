//! Choosing files with the desktop's own dialog: each path field has a "…" button that opens
//! it (through the XDG desktop portal on Linux). The app reaches it through [`FilePicker`], so
//! the tests can stand in for the person choosing.

use std::path::PathBuf;

/// What a path field asks the person to choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickKind {
    /// An existing file with one of these extensions.
    OpenFile(&'static [&'static str]),
    /// An existing folder.
    OpenFolder,
    /// A file to write, with this extension.
    SaveFile(&'static str),
}

/// One request to the dialog: what to choose, the dialog's title, and which of the field's
/// buttons a chosen path then acts as (e.g. "Load").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// What to choose.
    pub kind: PickKind,
    /// The dialog's title.
    pub title: &'static str,
    /// Index of the field's button pressed once a path is chosen.
    pub then: usize,
}

/// Asks the person for a path; `None` when they cancel (or no dialog can be shown).
pub trait FilePicker {
    /// Shows the dialog for `pick`, starting where `current` points when it exists.
    fn pick(&self, pick: &Pick, current: &str) -> Option<PathBuf>;
}

/// The desktop's native dialogs.
#[derive(Debug, Default, Clone, Copy)]
pub struct NativeDialogs;

impl FilePicker for NativeDialogs {
    fn pick(&self, pick: &Pick, current: &str) -> Option<PathBuf> {
        let mut dialog = rfd::FileDialog::new().set_title(pick.title);
        let current = PathBuf::from(current.trim());
        let start = if current.is_dir() {
            Some(current.clone())
        } else {
            current.parent().filter(|p| p.is_dir()).map(PathBuf::from)
        };
        if let Some(dir) = start {
            dialog = dialog.set_directory(dir);
        }
        match pick.kind {
            PickKind::OpenFile(extensions) => dialog
                .add_filter(extensions.join(", "), extensions)
                .pick_file(),
            PickKind::OpenFolder => dialog.pick_folder(),
            PickKind::SaveFile(extension) => {
                if let Some(name) = current.file_name() {
                    dialog = dialog.set_file_name(name.to_string_lossy());
                }
                dialog.add_filter(extension, &[extension]).save_file()
            }
        }
    }
}
