//! Where the task hub lives and how the engine authenticates: a connection string (Azurite
//! or account key) or Entra ID (managed identity, workload identity, Azure CLI).

use std::time::Duration;

use azure_storage::{CloudLocation, StorageCredentials};

use crate::identity::{self, CredentialChoice};

/// Which credentials to use.
#[derive(Clone)]
pub enum Credentials {
    /// Account name and key (Azurite's well-known key, or a real account's key).
    SharedKey {
        /// Account name.
        account: String,
        /// Account key (never logged).
        key: String,
    },
    /// Entra ID through azure_identity: managed identity, workload identity, Azure CLI, …
    /// (chosen by [`identity::choose_credential`]).
    EntraId {
        /// Account name.
        account: String,
        /// Which credential.
        credential: CredentialChoice,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SharedKey { account, .. } => {
                write!(f, "SharedKey {{ account: {account:?}, key: <redacted> }}")
            }
            Self::EntraId {
                account,
                credential,
            } => write!(
                f,
                "EntraId {{ account: {account:?}, credential: {credential:?} }}"
            ),
        }
    }
}

/// Service endpoints: the public cloud for an account, or explicit URLs (Azurite).
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Blob endpoint, e.g. `http://127.0.0.1:10000/devstoreaccount1`; `None`: public cloud.
    pub blob: Option<String>,
    /// Queue endpoint.
    pub queue: Option<String>,
    /// Table endpoint.
    pub table: Option<String>,
}

/// An account's address and credential, for a storage client other than the SDK's.
#[derive(Clone)]
pub struct AccountAccess {
    /// Account name.
    pub account: String,
    /// Blob endpoint (`http://127.0.0.1:10000/devstoreaccount1` on Azurite); `None`: public.
    pub blob_endpoint: Option<String>,
    /// The credential.
    pub credential: AccountCredential,
}

/// The credential of an [`AccountAccess`].
#[derive(Clone)]
pub enum AccountCredential {
    /// The account key (never logged).
    SharedKey(String),
    /// An Entra ID token source (scope `https://storage.azure.com/.default`).
    Token(std::sync::Arc<dyn azure_core::auth::TokenCredential>),
}

impl std::fmt::Debug for AccountAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.credential {
            AccountCredential::SharedKey(_) => "shared key",
            AccountCredential::Token(_) => "Entra ID token",
        };
        f.debug_struct("AccountAccess")
            .field("account", &self.account)
            .field("blob_endpoint", &self.blob_endpoint)
            .field("credential", &kind)
            .finish()
    }
}

/// Configuration of the Azure Storage backend.
#[derive(Debug, Clone)]
pub struct AzureConfig {
    /// Credentials.
    pub credentials: Credentials,
    /// Endpoints.
    pub endpoints: Endpoints,
    /// Task hub name: lowercase letters and digits, 3–40, starting with a letter. Prefixes
    /// every table, queue and container.
    pub task_hub: String,
    /// Number of control queues.
    pub control_partitions: u32,
    /// Longest visibility delay the queue service accepts (7 days in Azure); longer timers
    /// are re-armed in steps. Configurable so tests can use seconds.
    pub max_visibility_delay: Duration,
    /// Queue messages larger than this (bytes, before base64) go to a blob by reference.
    pub max_inline_message: usize,
    /// Table properties larger than this (bytes) go to a blob by reference.
    pub max_inline_property: usize,
    /// Longest wait for one storage request attempt; a request without an answer by then
    /// is retried (default 10 s).
    pub attempt_deadline: Duration,
    /// How long the SDK keeps retrying one call (from its first failure) before the call
    /// fails (default 30 s): with [`attempt_deadline`](Self::attempt_deadline), every
    /// storage call ends within about a minute whatever the service does.
    pub retry_budget: Duration,
    /// Maintain the status index (see `status_index`): listings by status read about as
    /// many rows as they return at any hub size, for a write ahead and a delete behind on
    /// each status change. Once on, it stays on for every process of the hub.
    pub status_index: bool,
    /// How old a status index entry that does not match its state row must be before a
    /// listing deletes it as stale (default 10 min): a younger one may be written ahead of
    /// a commit still under way. Configurable so tests can use zero.
    pub stale_index_grace: Duration,
}

/// Well-known Azurite account key (public, documented by Microsoft).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub(crate) const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl AzureConfig {
    /// Azurite on its default ports (10000–10002).
    pub fn azurite(task_hub: &str) -> Self {
        Self::azurite_at(task_hub, 10000, 10001, 10002)
    }

    /// Azurite on the given blob, queue and table ports.
    pub fn azurite_at(task_hub: &str, blob: u16, queue: u16, table: u16) -> Self {
        let url = |port: u16| Some(format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"));
        Self::new(
            task_hub,
            Credentials::SharedKey {
                account: AZURITE_ACCOUNT.into(),
                key: AZURITE_KEY.into(),
            },
            Endpoints {
                blob: url(blob),
                queue: url(queue),
                table: url(table),
            },
        )
    }

    /// Entra ID (managed identity and friends) against an account in the public cloud.
    pub fn entra_id(task_hub: &str, account: &str, credential: CredentialChoice) -> Self {
        Self::new(
            task_hub,
            Credentials::EntraId {
                account: account.into(),
                credential,
            },
            Endpoints {
                blob: None,
                queue: None,
                table: None,
            },
        )
    }

    fn new(task_hub: &str, credentials: Credentials, endpoints: Endpoints) -> Self {
        Self {
            credentials,
            endpoints,
            task_hub: task_hub.to_owned(),
            control_partitions: 4,
            max_visibility_delay: Duration::from_secs(7 * 24 * 3600 - 60),
            max_inline_message: 45 * 1024,
            max_inline_property: 30 * 1024,
            attempt_deadline: Duration::from_secs(10),
            retry_budget: Duration::from_secs(30),
            status_index: false,
            stale_index_grace: Duration::from_secs(600),
        }
    }

    /// Parses a storage connection string: `UseDevelopmentStorage=true`, or
    /// `AccountName=…;AccountKey=…` with optional `BlobEndpoint`/`QueueEndpoint`/`TableEndpoint`
    /// (and `DefaultEndpointsProtocol`, `EndpointSuffix`, ignored). The error never contains
    /// the key.
    pub fn from_connection_string(task_hub: &str, connection: &str) -> Result<Self, String> {
        let mut parts = std::collections::HashMap::new();
        for part in connection
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| "connection string parts must look like Name=value".to_owned())?;
            parts.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
        if parts
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Ok(Self::azurite(task_hub));
        }
        let account = parts
            .get("accountname")
            .cloned()
            .ok_or_else(|| "connection string has no AccountName".to_owned())?;
        let key = parts
            .get("accountkey")
            .cloned()
            .ok_or_else(|| "connection string has no AccountKey".to_owned())?;
        let endpoints = Endpoints {
            blob: parts.get("blobendpoint").cloned(),
            queue: parts.get("queueendpoint").cloned(),
            table: parts.get("tableendpoint").cloned(),
        };
        Ok(Self::new(
            task_hub,
            Credentials::SharedKey { account, key },
            endpoints,
        ))
    }

    /// An identity-based connection as the Functions host reads it: `<prefix>__accountName`
    /// or `<prefix>__blobServiceUri` / `__queueServiceUri` / `__tableServiceUri`, with
    /// `__credential` and `__clientId` (see [`identity::choose_credential`]). `Ok(None)`:
    /// no such settings.
    pub fn from_identity_settings(
        task_hub: &str,
        env: &dyn Fn(&str) -> Option<String>,
        prefix: &str,
    ) -> Result<Option<Self>, String> {
        let setting = |name: &str| env(&format!("{prefix}__{name}")).filter(|v| !v.is_empty());
        let uris = [
            setting("blobServiceUri"),
            setting("queueServiceUri"),
            setting("tableServiceUri"),
        ];
        let account = match setting("accountName") {
            Some(account) => account,
            None => match uris.iter().flatten().next() {
                Some(uri) => account_of_uri(uri)
                    .ok_or_else(|| format!("cannot read an account name from '{uri}'"))?,
                None => return Ok(None),
            },
        };
        let [blob, queue, table] = uris;
        let service = |uri: Option<String>, kind: &str| match uri {
            Some(uri) => Some(uri),
            None if setting("accountName").is_some() => None,
            None => Some(format!("https://{account}.{kind}.core.windows.net")),
        };
        let credential = identity::choose_credential(env, prefix)?;
        let mut config = Self::entra_id(task_hub, &account, credential);
        config.endpoints = Endpoints {
            blob: service(blob, "blob"),
            queue: service(queue, "queue"),
            table: service(table, "table"),
        };
        Ok(Some(config))
    }

    /// Checks the task hub name.
    pub fn validate(&self) -> Result<(), String> {
        let hub = &self.task_hub;
        let ok = (3..=40).contains(&hub.len())
            && hub.starts_with(|c: char| c.is_ascii_lowercase())
            && hub
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !ok {
            return Err(format!(
                "task hub name '{hub}' must be 3 to 40 lowercase letters or digits, starting with a letter"
            ));
        }
        if self.control_partitions == 0 || self.control_partitions > 16 {
            return Err("control partitions must be between 1 and 16".into());
        }
        Ok(())
    }

    /// A Blob service client with these credentials (for the data containers of the
    /// pipeline: landing, bronze, silver, gold).
    pub fn blob_service(&self) -> Result<azure_storage_blobs::prelude::BlobServiceClient, String> {
        let credentials = self.storage_credentials()?;
        Ok(azure_storage_blobs::prelude::ClientBuilder::with_location(
            self.location(&self.endpoints.blob),
            credentials,
        )
        .blob_service_client())
    }

    /// A Table service client with these credentials (tools and tests that look at the
    /// task hub's tables themselves).
    pub fn table_service(&self) -> Result<azure_data_tables::clients::TableServiceClient, String> {
        let credentials = self.storage_credentials()?;
        Ok(
            azure_data_tables::clients::TableServiceClientBuilder::with_location(
                self.location(&self.endpoints.table),
                credentials,
            )
            .build(),
        )
    }

    /// How another storage client (the Delta tables' object store) reaches this account:
    /// the blob endpoint (`None`: the public cloud's) and the credential.
    pub fn account_access(&self) -> Result<AccountAccess, String> {
        let credential = match &self.credentials {
            Credentials::SharedKey { key, .. } => AccountCredential::SharedKey(key.clone()),
            Credentials::EntraId { credential, .. } => {
                AccountCredential::Token(identity::build_credential(credential)?)
            }
        };
        Ok(AccountAccess {
            account: self.account().to_owned(),
            blob_endpoint: self
                .endpoints
                .blob
                .as_ref()
                .map(|uri| uri.trim_end_matches('/').to_owned()),
            credential,
        })
    }

    pub(crate) fn account(&self) -> &str {
        match &self.credentials {
            Credentials::SharedKey { account, .. } | Credentials::EntraId { account, .. } => {
                account
            }
        }
    }

    pub(crate) fn storage_credentials(&self) -> Result<StorageCredentials, String> {
        match &self.credentials {
            Credentials::SharedKey { account, key } => {
                Ok(StorageCredentials::access_key(account.clone(), key.clone()))
            }
            Credentials::EntraId { credential, .. } => {
                identity::build_credential(credential).map(StorageCredentials::token_credential)
            }
        }
    }

    pub(crate) fn location(&self, endpoint: &Option<String>) -> CloudLocation {
        match endpoint {
            Some(uri) => CloudLocation::Custom {
                account: self.account().to_owned(),
                uri: uri.trim_end_matches('/').to_owned(),
            },
            None => CloudLocation::Public {
                account: self.account().to_owned(),
            },
        }
    }
}

/// `https://acct.blob.core.windows.net/` → `acct`.
fn account_of_uri(uri: &str) -> Option<String> {
    let host = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let account = host.split(['.', '/', ':']).next()?;
    (!account.is_empty()).then(|| account.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_parse_and_never_show_the_key() {
        let dev = AzureConfig::from_connection_string("hub", "UseDevelopmentStorage=true").unwrap();
        assert_eq!(dev.account(), AZURITE_ACCOUNT);
        let cs = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net";
        let real = AzureConfig::from_connection_string("hub", cs).unwrap();
        assert_eq!(real.account(), "acct");
        let shown = format!("{real:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        let err =
            AzureConfig::from_connection_string("hub", "AccountName=a;AccountKey").unwrap_err();
        assert!(!err.contains("AccountKey="), "{err}");
        assert!(AzureConfig::from_connection_string("hub", "AccountName=a").is_err());
    }

    #[test]
    fn task_hub_names_are_checked() {
        assert!(AzureConfig::azurite("flowforge1").validate().is_ok());
        assert!(AzureConfig::azurite("Bad-Hub").validate().is_err());
        assert!(AzureConfig::azurite("ab").validate().is_err());
    }

    #[test]
    fn identity_based_connections_read_the_hosts_settings() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let none = AzureConfig::from_identity_settings("hub", &env(&[]), "AzureWebJobsStorage");
        assert!(none.unwrap().is_none());
        let by_name = AzureConfig::from_identity_settings(
            "hub",
            &env(&[
                ("AzureWebJobsStorage__accountName", "acct"),
                ("AzureWebJobsStorage__credential", "managedidentity"),
                ("IDENTITY_ENDPOINT", "http://127.0.0.1:4000/msi/token"),
            ]),
            "AzureWebJobsStorage",
        )
        .unwrap()
        .unwrap();
        assert_eq!(by_name.account(), "acct");
        assert!(by_name.endpoints.queue.is_none(), "public cloud endpoints");
        assert!(matches!(
            by_name.credentials,
            Credentials::EntraId {
                credential: CredentialChoice::AppService { client_id: None },
                ..
            }
        ));
        let by_uri = AzureConfig::from_identity_settings(
            "hub",
            &env(&[
                (
                    "AzureWebJobsStorage__blobServiceUri",
                    "https://lake1.blob.core.windows.net",
                ),
                (
                    "AzureWebJobsStorage__queueServiceUri",
                    "https://lake1.queue.core.windows.net",
                ),
            ]),
            "AzureWebJobsStorage",
        )
        .unwrap()
        .unwrap();
        assert_eq!(by_uri.account(), "lake1");
        assert_eq!(
            by_uri.endpoints.table.as_deref(),
            Some("https://lake1.table.core.windows.net")
        );
    }
}
