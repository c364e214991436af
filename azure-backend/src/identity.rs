//! Which Entra ID credential the engine uses, chosen the way a Functions app is configured.
//!
//! The Functions host reads identity-based connections from `<prefix>__accountName` (or
//! `__blobServiceUri` / `__queueServiceUri` / `__tableServiceUri`), `__credential`
//! (`managedidentity`) and `__clientId` (a user-assigned identity). The engine reads the
//! same settings, so one setting serves the host's triggers and the engine's clients.
//!
//! The choice is a pure function of the environment ([`choose_credential`]), unit-tested;
//! [`build_credential`] turns it into an azure_identity credential. On App Service and
//! Functions the managed identity is served at `IDENTITY_ENDPOINT` with `IDENTITY_HEADER`
//! (not at the VM endpoint 169.254.169.254). azure_identity 0.21's App Service credential
//! has no client id, so a user-assigned identity there goes through [`AppServiceIdentity`].

use std::sync::Arc;

use azure_core::auth::{AccessToken, Secret, TokenCredential};
use azure_core::error::{Error as CoreError, ErrorKind};
use azure_identity::{
    AppServiceManagedIdentityCredential, AzureCliCredential, DefaultAzureCredentialBuilder,
    EnvironmentCredential, TokenCredentialOptions, VirtualMachineManagedIdentityCredential,
    WorkloadIdentityCredential,
};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::Mutex;

/// The credential a configuration asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialChoice {
    /// App Service / Functions managed identity (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`);
    /// `client_id` selects a user-assigned identity.
    AppService {
        /// The user-assigned identity's client id; `None`: the system-assigned identity.
        client_id: Option<String>,
    },
    /// The VM / container instance metadata endpoint (169.254.169.254).
    VirtualMachine,
    /// A service principal from `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`.
    Environment,
    /// Workload identity (`AZURE_FEDERATED_TOKEN_FILE`, as on AKS).
    WorkloadIdentity,
    /// The Azure CLI's signed-in account (local development).
    AzureCli,
    /// Try, in order: environment, App Service identity, VM identity, Azure CLI.
    DefaultChain,
}

/// Chooses the credential from the environment. `prefix` is the connection's name
/// (`AzureWebJobsStorage`). Rules, first match wins:
/// 1. `AZURE_CREDENTIAL_KIND` names one explicitly (azure_identity's names:
///    `appservice`, `virtualmachine`, `environment`, `workloadidentity`, `azurecli`);
/// 2. `<prefix>__credential` = `managedidentity`: the App Service identity when
///    `IDENTITY_ENDPOINT` is set (with `<prefix>__clientId`), else the VM identity;
/// 3. `AZURE_FEDERATED_TOKEN_FILE` set: workload identity;
/// 4. otherwise the default chain.
pub fn choose_credential(
    env: &dyn Fn(&str) -> Option<String>,
    prefix: &str,
) -> Result<CredentialChoice, String> {
    let client_id = env(&format!("{prefix}__clientId")).filter(|s| !s.is_empty());
    let on_app_service = env("IDENTITY_ENDPOINT").is_some_and(|s| !s.is_empty());
    if let Some(kind) = env("AZURE_CREDENTIAL_KIND").filter(|s| !s.is_empty()) {
        return match kind.to_ascii_lowercase().as_str() {
            "appservice" => Ok(CredentialChoice::AppService { client_id }),
            "virtualmachine" => Ok(CredentialChoice::VirtualMachine),
            "environment" => Ok(CredentialChoice::Environment),
            "workloadidentity" => Ok(CredentialChoice::WorkloadIdentity),
            "azurecli" => Ok(CredentialChoice::AzureCli),
            other => Err(format!(
                "AZURE_CREDENTIAL_KIND '{other}' is not one of appservice, virtualmachine, \
                 environment, workloadidentity, azurecli"
            )),
        };
    }
    if let Some(credential) = env(&format!("{prefix}__credential")).filter(|s| !s.is_empty()) {
        if !credential.eq_ignore_ascii_case("managedidentity") {
            return Err(format!(
                "{prefix}__credential '{credential}' is not supported (only managedidentity)"
            ));
        }
        return Ok(if on_app_service {
            CredentialChoice::AppService { client_id }
        } else {
            CredentialChoice::VirtualMachine
        });
    }
    if client_id.is_some() && on_app_service {
        return Ok(CredentialChoice::AppService { client_id });
    }
    if env("AZURE_FEDERATED_TOKEN_FILE").is_some_and(|s| !s.is_empty()) {
        return Ok(CredentialChoice::WorkloadIdentity);
    }
    Ok(CredentialChoice::DefaultChain)
}

/// Builds the credential a choice names.
pub fn build_credential(choice: &CredentialChoice) -> Result<Arc<dyn TokenCredential>, String> {
    let options = TokenCredentialOptions::default;
    let failed = |e: CoreError| format!("no Entra ID credential ({choice:?}): {e}");
    Ok(match choice {
        CredentialChoice::AppService { client_id: None } => {
            Arc::new(AppServiceManagedIdentityCredential::create(options()).map_err(failed)?)
        }
        CredentialChoice::AppService {
            client_id: Some(client_id),
        } => Arc::new(AppServiceIdentity::from_env(client_id.clone())?),
        CredentialChoice::VirtualMachine => {
            Arc::new(VirtualMachineManagedIdentityCredential::new(options()))
        }
        CredentialChoice::Environment => {
            Arc::new(EnvironmentCredential::create(options()).map_err(failed)?)
        }
        CredentialChoice::WorkloadIdentity => {
            Arc::new(WorkloadIdentityCredential::create(options()).map_err(failed)?)
        }
        CredentialChoice::AzureCli => Arc::new(AzureCliCredential::new()),
        CredentialChoice::DefaultChain => Arc::new(
            DefaultAzureCredentialBuilder::new()
                .include_app_service_managed_identity_credential()
                .include_virtual_machine_managed_identity_credential()
                .build()
                .map_err(failed)?,
        ),
    })
}

/// The App Service managed identity protocol (api-version 2019-08-01) with a client id,
/// for a user-assigned identity. Tokens are cached until five minutes before they expire.
#[derive(Debug)]
pub struct AppServiceIdentity {
    endpoint: String,
    header: Secret,
    client_id: String,
    http: Arc<dyn azure_core::HttpClient>,
    cached: Mutex<Option<(String, AccessToken)>>,
}

impl AppServiceIdentity {
    /// From `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`.
    pub fn from_env(client_id: String) -> Result<Self, String> {
        let endpoint = std::env::var("IDENTITY_ENDPOINT")
            .map_err(|_| "the App Service identity needs IDENTITY_ENDPOINT".to_owned())?;
        let header = std::env::var("IDENTITY_HEADER")
            .map_err(|_| "the App Service identity needs IDENTITY_HEADER".to_owned())?;
        Ok(Self {
            endpoint,
            header: Secret::new(header),
            client_id,
            http: azure_core::new_http_client(),
            cached: Mutex::new(None),
        })
    }

    async fn fetch(&self, resource: &str) -> azure_core::Result<AccessToken> {
        let mut url = azure_core::Url::parse(&self.endpoint)
            .map_err(|e| CoreError::full(ErrorKind::Credential, e, "IDENTITY_ENDPOINT"))?;
        url.query_pairs_mut()
            .append_pair("api-version", "2019-08-01")
            .append_pair("resource", resource)
            .append_pair("client_id", &self.client_id);
        let mut request = azure_core::Request::new(url, azure_core::Method::Get);
        request.insert_header("x-identity-header", self.header.secret().to_owned());
        let response = self.http.execute_request(&request).await?;
        let (status, _, body) = response.deconstruct();
        let body = body.collect().await?;
        if !status.is_success() {
            return Err(CoreError::message(
                ErrorKind::Credential,
                format!("the App Service identity endpoint answered {status}"),
            ));
        }
        let token: IdentityResponse = azure_core::from_json(&body)?;
        let expires = token
            .expires_on
            .parse::<i64>()
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .unwrap_or_else(|| OffsetDateTime::now_utc() + time::Duration::minutes(10));
        Ok(AccessToken::new(token.access_token, expires))
    }
}

#[derive(Deserialize)]
struct IdentityResponse {
    access_token: String,
    expires_on: String,
}

#[async_trait::async_trait]
impl TokenCredential for AppServiceIdentity {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let [scope] = scopes else {
            return Err(CoreError::message(
                ErrorKind::Credential,
                "the App Service identity takes exactly one scope",
            ));
        };
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let mut cached = self.cached.lock().await;
        if let Some((for_resource, token)) = cached.as_ref() {
            let fresh = token.expires_on > OffsetDateTime::now_utc() + time::Duration::minutes(5);
            if for_resource == resource && fresh {
                return Ok(token.clone());
            }
        }
        let token = self.fetch(resource).await?;
        *cached = Some((resource.to_owned(), token.clone()));
        Ok(token)
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        *self.cached.lock().await = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn choose(pairs: &[(&str, &str)]) -> Result<CredentialChoice, String> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        choose_credential(&|name| env.get(name).cloned(), "AzureWebJobsStorage")
    }

    #[test]
    fn a_functions_app_with_managed_identity_uses_the_app_service_endpoint() {
        let app_service = [("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/msi/token")];
        let system = [
            app_service[0],
            ("AzureWebJobsStorage__credential", "managedidentity"),
        ];
        assert_eq!(
            choose(&system),
            Ok(CredentialChoice::AppService { client_id: None })
        );
        let user = [
            system[0],
            system[1],
            ("AzureWebJobsStorage__clientId", "c0ffee"),
        ];
        assert_eq!(
            choose(&user),
            Ok(CredentialChoice::AppService {
                client_id: Some("c0ffee".into())
            })
        );
        // A client id alone on App Service still means that user-assigned identity.
        let client_only = [app_service[0], ("AzureWebJobsStorage__clientId", "c0ffee")];
        assert!(matches!(
            choose(&client_only),
            Ok(CredentialChoice::AppService { client_id: Some(_) })
        ));
    }

    #[test]
    fn managed_identity_off_app_service_is_the_vm_endpoint() {
        let vm = [("AzureWebJobsStorage__credential", "managedidentity")];
        assert_eq!(choose(&vm), Ok(CredentialChoice::VirtualMachine));
    }

    #[test]
    fn an_explicit_kind_wins_and_unknown_values_are_errors() {
        let explicit = [
            ("AZURE_CREDENTIAL_KIND", "azurecli"),
            ("IDENTITY_ENDPOINT", "http://x"),
            ("AzureWebJobsStorage__credential", "managedidentity"),
        ];
        assert_eq!(choose(&explicit), Ok(CredentialChoice::AzureCli));
        assert!(choose(&[("AZURE_CREDENTIAL_KIND", "magic")]).is_err());
        assert!(choose(&[("AzureWebJobsStorage__credential", "password")]).is_err());
    }

    #[test]
    fn workload_identity_and_the_default_chain() {
        let aks = [("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token")];
        assert_eq!(choose(&aks), Ok(CredentialChoice::WorkloadIdentity));
        assert_eq!(choose(&[]), Ok(CredentialChoice::DefaultChain));
    }
}
