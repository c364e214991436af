//! The object store of one lake container for delta-rs, with the engine's own credentials:
//! the account key, or an Entra ID token from the same credential the SDK clients use (so
//! a managed identity reaches the tables exactly as it reaches the task hub).

use std::sync::{Arc, Once};
use std::time::Duration;

use azure_core::auth::TokenCredential;
use flowforge_azure::{AccountAccess, AccountCredential};
use object_store::azure::{AzureCredential, MicrosoftAzureBuilder};
use object_store::{ClientOptions, CredentialProvider, ObjectStore, RetryConfig};

/// The token scope of Azure Storage.
const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// An Entra ID credential as object_store's credential provider.
struct EntraToken(Arc<dyn TokenCredential>);

impl std::fmt::Debug for EntraToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EntraToken")
    }
}

#[async_trait::async_trait]
impl CredentialProvider for EntraToken {
    type Credential = AzureCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AzureCredential>> {
        let token =
            self.0
                .get_token(&[STORAGE_SCOPE])
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: "MicrosoftAzure",
                    source: Box::new(e),
                })?;
        Ok(Arc::new(AzureCredential::BearerToken(
            token.token.secret().to_owned(),
        )))
    }
}

/// Registers delta-rs's `az://` log store once per process.
pub fn register_azure_scheme() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| deltalake::azure::register_handlers(None));
}

/// The store of `container`, rooted at the container. Every request has a deadline (30 s,
/// connecting 5 s) and at most three retries within a minute.
pub fn container_store(
    access: &AccountAccess,
    container: &str,
) -> Result<Arc<dyn ObjectStore>, String> {
    let mut builder = MicrosoftAzureBuilder::new()
        .with_account(access.account.clone())
        .with_container_name(container)
        .with_client_options(
            ClientOptions::new()
                .with_timeout(Duration::from_secs(30))
                .with_connect_timeout(Duration::from_secs(5))
                .with_allow_http(true),
        )
        .with_retry(RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(60),
            ..RetryConfig::default()
        });
    if let Some(endpoint) = &access.blob_endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    builder = match &access.credential {
        AccountCredential::SharedKey(key) => builder.with_access_key(key.clone()),
        AccountCredential::Token(token) => {
            builder.with_credentials(Arc::new(EntraToken(token.clone())))
        }
    };
    builder
        .build()
        .map(|store| Arc::new(store) as Arc<dyn ObjectStore>)
        .map_err(|e| format!("the object store of container {container}: {e}"))
}
