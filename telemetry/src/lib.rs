//! Where FlowForge's traces and metrics go. The engine records them through the
//! OpenTelemetry API only (`flowforge_orchestrator::telemetry`); this crate holds the SDK
//! and the exporters, kept out of the engine so that its users and tests do not build
//! them: [`Telemetry::install`] from the environment ([`TelemetrySettings`]); and, behind
//! the `receiver` feature, [`receiver::OtlpReceiver`], a local OTLP/HTTP endpoint for
//! tests and the benchmark.

mod install;
#[cfg(feature = "receiver")]
pub mod receiver;

pub use install::{Telemetry, TelemetrySettings};
pub use opentelemetry_otlp::Protocol;
