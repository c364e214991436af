//! The OpenTelemetry SDK, installed as the global provider
//! when the environment names a destination, and not at all otherwise (the engine's
//! instrumentation then stays OpenTelemetry's no-op: nothing is built or sent).
//!
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` (or the per-signal `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
//!   `…_METRICS_ENDPOINT`): OTLP over HTTP, protobuf unless `OTEL_EXPORTER_OTLP_PROTOCOL`
//!   says `http/json`, to a collector, Azure Monitor's OTLP ingestion or any backend.
//! - `APPLICATIONINSIGHTS_CONNECTION_STRING`: straight to Application Insights through the
//!   `opentelemetry-application-insights` exporter (spans become requests, dependencies and
//!   exceptions; metrics custom metrics), with no collector beside the app — which a
//!   Functions app cannot run.
//!
//! Both may be set; `OTEL_SDK_DISABLED=true` turns everything off. The SDK's own variables apply (`OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_METRIC_EXPORT_INTERVAL`, …).
//! Exports run on the SDK's own threads with a blocking client, off the request path.

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// What the environment asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TelemetrySettings {
    /// OTLP over HTTP, with this protocol, when an endpoint is set.
    pub otlp: Option<Protocol>,
    /// The Application Insights connection string.
    pub app_insights: Option<String>,
    /// The service name (`OTEL_SERVICE_NAME`, else the Functions app's name, else
    /// `flowforge`).
    pub service_name: String,
}

impl TelemetrySettings {
    /// Reads the settings; a protocol that is not built in is refused with what to set.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        // The SDK's switch: everything off, whatever else is set.
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(Self {
                service_name: "flowforge".into(),
                ..Self::default()
            });
        }
        let endpoint = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        ]
        .iter()
        .any(|name| set(name).is_some());
        let otlp = if endpoint {
            let protocol =
                set("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_else(|| "http/protobuf".into());
            Some(match protocol.trim() {
                "http/protobuf" => Protocol::HttpBinary,
                "http/json" => Protocol::HttpJson,
                "grpc" => anyhow::bail!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not built in: use http/protobuf (the collector's port 4318)"
                ),
                other => anyhow::bail!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL='{other}' is not one of http/protobuf, http/json"
                ),
            })
        } else {
            None
        };
        let service_name = set("OTEL_SERVICE_NAME")
            .or_else(|| set("WEBSITE_SITE_NAME"))
            .unwrap_or_else(|| "flowforge".into());
        Ok(Self {
            otlp,
            app_insights: set("APPLICATIONINSIGHTS_CONNECTION_STRING"),
            service_name,
        })
    }

    /// Whether anything is exported.
    pub fn is_on(&self) -> bool {
        self.otlp.is_some() || self.app_insights.is_some()
    }
}

/// The installed providers; [`Telemetry::shutdown`] flushes them.
#[derive(Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Installs the providers the settings ask for as OpenTelemetry's global ones (none
    /// when nothing is asked for).
    pub fn install(settings: &TelemetrySettings) -> anyhow::Result<Self> {
        if !settings.is_on() {
            return Ok(Self::default());
        }
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .build();
        let mut tracer = SdkTracerProvider::builder().with_resource(resource.clone());
        let mut meter = SdkMeterProvider::builder().with_resource(resource);
        if let Some(protocol) = settings.otlp {
            let spans = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(protocol)
                .with_timeout(Duration::from_secs(10))
                .build()
                .context("building the OTLP span exporter")?;
            tracer = tracer.with_batch_exporter(spans);
            let metrics = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(protocol)
                .with_timeout(Duration::from_secs(10))
                .build()
                .context("building the OTLP metric exporter")?;
            meter = meter.with_reader(PeriodicReader::builder(metrics).build());
        }
        if let Some(connection_string) = &settings.app_insights {
            let client = || {
                reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .context("building the Application Insights HTTP client")
            };
            // The connection string holds the instrumentation key: never logged.
            let spans = opentelemetry_application_insights::Exporter::new_from_connection_string(
                connection_string,
                client()?,
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "APPLICATIONINSIGHTS_CONNECTION_STRING is not a valid connection string"
                )
            })?;
            tracer = tracer.with_batch_exporter(spans);
            let metrics = opentelemetry_application_insights::Exporter::new_from_connection_string(
                connection_string,
                client()?,
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "APPLICATIONINSIGHTS_CONNECTION_STRING is not a valid connection string"
                )
            })?;
            meter = meter.with_reader(PeriodicReader::builder(metrics).build());
        }
        let tracer = tracer.build();
        let meter = meter.build();
        opentelemetry::global::set_tracer_provider(tracer.clone());
        opentelemetry::global::set_meter_provider(meter.clone());
        tracing::info!(
            otlp = settings.otlp.is_some(),
            app_insights = settings.app_insights.is_some(),
            service = settings.service_name,
            "telemetry export on"
        );
        Ok(Self {
            tracer: Some(tracer),
            meter: Some(meter),
        })
    }

    /// Whether metrics are exported (so the storage-backed gauges are worth reading).
    pub fn metrics_on(&self) -> bool {
        self.meter.is_some()
    }

    /// Flushes and stops the exporters (at exit: what was recorded is sent).
    pub fn shutdown(&self) {
        if let Some(tracer) = &self.tracer {
            if let Err(error) = tracer.shutdown() {
                tracing::warn!(%error, "flushing spans at exit");
            }
        }
        if let Some(meter) = &self.meter {
            if let Err(error) = meter.shutdown() {
                tracing::warn!(%error, "flushing metrics at exit");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> anyhow::Result<TelemetrySettings> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TelemetrySettings::from_env(&move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn nothing_set_is_off() {
        let off = settings(&[]).unwrap();
        assert!(!off.is_on());
        assert_eq!(off.service_name, "flowforge");
        assert!(!settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])
            .unwrap()
            .is_on());
    }

    #[test]
    fn an_endpoint_turns_otlp_on_with_the_protocol_asked_for() {
        let on = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]).unwrap();
        assert_eq!(on.otlp, Some(Protocol::HttpBinary));
        let json = settings(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c/v1/traces"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ])
        .unwrap();
        assert_eq!(json.otlp, Some(Protocol::HttpJson));
        let grpc = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])
        .unwrap_err();
        assert!(grpc.to_string().contains("4318"), "{grpc}");
    }

    #[test]
    fn app_insights_and_the_service_name() {
        let on = settings(&[
            (
                "APPLICATIONINSIGHTS_CONNECTION_STRING",
                "InstrumentationKey=00000000-0000-0000-0000-000000000000",
            ),
            ("WEBSITE_SITE_NAME", "ff-app"),
        ])
        .unwrap();
        assert!(on.is_on() && on.otlp.is_none());
        assert_eq!(on.service_name, "ff-app");
    }
}
