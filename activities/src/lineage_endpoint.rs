//! Where a run's OpenLineage events go besides the lake: the OpenLineage HTTP transport's
//! settings, read from the OpenLineage client's environment variables.

/// Where lineage events go besides the lake.
#[derive(Clone, Default)]
pub struct LineageEndpoint {
    /// `OPENLINEAGE_URL`.
    pub url: String,
    /// `OPENLINEAGE_ENDPOINT` (default `api/v1/lineage`).
    pub path: String,
    /// `OPENLINEAGE_API_KEY` (never logged).
    pub api_key: Option<String>,
}

impl LineageEndpoint {
    /// From the OpenLineage client's environment variables; `None` when `OPENLINEAGE_URL`
    /// is unset or empty.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<Self> {
        let url = env("OPENLINEAGE_URL").filter(|u| !u.trim().is_empty())?;
        Some(Self {
            url: url.trim_end_matches('/').to_owned(),
            path: env("OPENLINEAGE_ENDPOINT")
                .filter(|p| !p.trim().is_empty())
                .unwrap_or_else(|| "api/v1/lineage".to_owned())
                .trim_start_matches('/')
                .to_owned(),
            api_key: env("OPENLINEAGE_API_KEY").filter(|k| !k.is_empty()),
        })
    }
}

impl std::fmt::Debug for LineageEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never reaches a log.
        f.debug_struct("LineageEndpoint")
            .field("url", &self.url)
            .field("path", &self.path)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openlineage_variables_name_the_endpoint_and_the_key_stays_out_of_debug() {
        let env = |name: &str| match name {
            "OPENLINEAGE_URL" => Some("http://marquez:5000/".to_owned()),
            "OPENLINEAGE_API_KEY" => Some("secret-key".to_owned()),
            _ => None,
        };
        let endpoint = LineageEndpoint::from_env(&env).unwrap();
        assert_eq!(endpoint.url, "http://marquez:5000");
        assert_eq!(endpoint.path, "api/v1/lineage");
        assert!(!format!("{endpoint:?}").contains("secret-key"));
        assert!(LineageEndpoint::from_env(&|_| None).is_none());
    }
}
