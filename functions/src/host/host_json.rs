//! What the handler reads of the app's `host.json`: the limits the host enforces on it.
//! The host starts the handler with `FUNCTIONS_APP_ROOT_PATH` (the folder of host.json), so
//! these settings are written once, in host.json, and never repeated as app settings.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// The host's limits that shape how the handler works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLimits {
    /// `functionTimeout`: past it the host restarts the whole handler process.
    pub function_timeout: Duration,
    /// `extensions.queues.maxDequeueCount`: past it the host moves a message to `-poison`.
    pub max_dequeue_count: u32,
}

/// The host's defaults: 5 deliveries, and the Consumption plan's 5 minutes (the shortest
/// default of any plan).
impl Default for HostLimits {
    fn default() -> Self {
        Self {
            function_timeout: Duration::from_secs(5 * 60),
            max_dequeue_count: 5,
        }
    }
}

impl HostLimits {
    /// Reads `host.json` in `app_root`, then the app settings that override it as the
    /// host applies them (`AzureFunctionsJobHost__functionTimeout`,
    /// `AzureFunctionsJobHost__extensions__queues__maxDequeueCount`); defaults for what
    /// neither says.
    pub fn read(app_root: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let path = app_root.join("host.json");
        let mut limits = match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        if let Some(timeout) = env("AzureFunctionsJobHost__functionTimeout") {
            let overridden =
                Self::parse(&serde_json::json!({ "functionTimeout": timeout }).to_string())
                    .map_err(|e| format!("AzureFunctionsJobHost__functionTimeout: {e}"))?;
            limits.function_timeout = overridden.function_timeout;
        }
        if let Some(count) = env("AzureFunctionsJobHost__extensions__queues__maxDequeueCount") {
            limits.max_dequeue_count = count
                .trim()
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("maxDequeueCount '{count}' is not a positive number"))?;
        }
        Ok(limits)
    }

    /// Parses host.json's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let json: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut limits = Self::default();
        match json.get("functionTimeout") {
            None | Some(Value::Null) => {}
            Some(Value::String(timeout)) => {
                // "-1" (unbounded, Premium and Dedicated) keeps a finite budget: the
                // Premium plan's default of 30 minutes.
                limits.function_timeout = if timeout.trim() == "-1" {
                    Duration::from_secs(30 * 60)
                } else {
                    parse_timespan(timeout)?
                };
            }
            Some(other) => return Err(format!("functionTimeout {other} is not a time span")),
        }
        if let Some(count) = json.pointer("/extensions/queues/maxDequeueCount") {
            limits.max_dequeue_count = count
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("maxDequeueCount {count} is not a positive number"))?;
        }
        Ok(limits)
    }
}

/// A .NET time span: `hh:mm:ss`, `d.hh:mm:ss`, with optional fractional seconds.
pub fn parse_timespan(text: &str) -> Result<Duration, String> {
    let bad = || format!("'{text}' is not a time span like 00:10:00");
    let (days, clock) = match text.trim().split_once('.') {
        Some((d, rest)) if rest.contains(':') && !d.contains(':') => {
            (d.parse::<u64>().map_err(|_| bad())?, rest)
        }
        _ => (0, text.trim()),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let [h, m, s] = parts.as_slice() else {
        return Err(bad());
    };
    let hours: u64 = h.parse().map_err(|_| bad())?;
    let minutes: u64 = m.parse().map_err(|_| bad())?;
    let seconds: f64 = s.parse().map_err(|_| bad())?;
    if minutes >= 60 || !(0.0..60.0).contains(&seconds) {
        return Err(bad());
    }
    let whole = ((days * 24 + hours) * 60 + minutes) * 60;
    Ok(Duration::from_secs(whole) + Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_spans_parse_as_dotnet_writes_them() {
        assert_eq!(parse_timespan("00:10:00"), Ok(Duration::from_secs(600)));
        assert_eq!(
            parse_timespan("1.02:00:30"),
            Ok(Duration::from_secs(93_630))
        );
        assert_eq!(
            parse_timespan("00:00:01.5"),
            Ok(Duration::from_millis(1500))
        );
        assert!(parse_timespan("10 minutes").is_err());
        assert!(parse_timespan("00:61:00").is_err());
    }

    #[test]
    fn host_json_limits_with_defaults() {
        let ours = HostLimits::parse(
            r#"{"functionTimeout": "00:10:00", "extensions": {"queues": {"maxDequeueCount": 4}}}"#,
        )
        .unwrap();
        assert_eq!(ours.function_timeout, Duration::from_secs(600));
        assert_eq!(ours.max_dequeue_count, 4);
        assert_eq!(HostLimits::parse("{}").unwrap(), HostLimits::default());
        let unbounded = HostLimits::parse(r#"{"functionTimeout": "-1"}"#).unwrap();
        assert_eq!(unbounded.function_timeout, Duration::from_secs(1800));
        assert!(HostLimits::parse(r#"{"functionTimeout": 5}"#).is_err());
        assert!(HostLimits::read(Path::new("/nonexistent"), &|_| None).is_ok());
        let overrides = |name: &str| match name {
            "AzureFunctionsJobHost__functionTimeout" => Some("00:30:00".to_owned()),
            "AzureFunctionsJobHost__extensions__queues__maxDequeueCount" => Some("3".to_owned()),
            _ => None,
        };
        let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let limits = HostLimits::read(&app, &overrides).unwrap();
        assert_eq!(limits.function_timeout, Duration::from_secs(1800));
        assert_eq!(limits.max_dequeue_count, 3);
    }

    #[test]
    fn the_shipped_host_json_parses() {
        let text = include_str!("../../../host.json");
        let limits = HostLimits::parse(text).unwrap();
        assert!(limits.function_timeout >= Duration::from_secs(60));
    }
}
