//! Desktop app for exploring routing and steering experts; built on the engine worker.
