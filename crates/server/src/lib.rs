//! The Gatehouse server: configuration, the HTTP adapter, and the wiring of every
//! adapter into the domain's use cases. `main.rs` only parses the command line and calls
//! into this library, so the end-to-end tests build the very same application.

pub mod avatar_sweep;
pub mod background;
pub mod http;
pub mod metrics;
pub mod relay;
pub mod replica;
pub mod secret_policy;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod webhook_relay;

pub use settings::Settings;
pub use startup::Application;
