//! One module per panel of the window; each adds the method that draws it to
//! [`crate::state::MoescopeApp`].

mod experts;
mod inspector;
mod outputs;
mod prompt;
mod prompt_set;
mod recording;
mod steering;
