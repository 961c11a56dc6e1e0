//! AWS: the `[connection.aws.NAME]`s, their credentials, and the IAM calls of the access-key actions.
//!
//! A connection is built once, on first use, and reused: one `aws-sdk-iam` and one
//! `aws-sdk-sts` client over one HTTPS client. Its credentials come from the standard
//! chain (environment, shared config and credentials files, SSO, process, container and
//! instance roles), from `profile`, or from `role_arn` assumed through STS with a
//! session name that names vigilo and the approval (`vigilo-approval-12`). Resolved
//! credentials are cached for the connection's `ttl` and refreshed a minute before they
//! expire; every secret they carry is handed to [`crate::redact`] before anything can
//! print it.
//!
//! A connection name with no `[connection.aws.NAME]` is an error: vigilo never falls
//! back to another account. The SDK retries throttling and 5xx answers with its
//! standard backoff; AccessDenied and NoSuchEntity are not retried.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::operation::RequestId;
use aws_sdk_iam::types::StatusType;

use crate::config::AwsConnectionConfig;
pub use error::AwsError;

pub mod error;
pub mod signed;
pub mod xml;

/// IAM is global; its calls are signed for this region when a connection names none.
const IAM_REGION: &str = "us-east-1";

/// Where one IAM call is made: with which session's credentials, in which region (`None`: the
/// connection's).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The session whose credentials sign it ([`session_name`]; the connection's own when it
    /// assumes no role).
    pub session: &'a str,
    /// The action's `region`, if it names one.
    pub region: Option<&'a str>,
}

/// Credentials are refreshed this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(60);

/// How long one AWS call may take, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// One attempt's limit within [`OPERATION_TIMEOUT`].
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What `ListAccessKeys` says of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// The key exists with this status (`Active` or `Inactive`).
    Present(String),
    /// The user exists; the key does not.
    KeyGone,
    /// The user does not exist.
    UserGone,
}

/// What one `ListAccessKeys` read of a user said: key id → status; `None`: no such user.
pub type UserKeys = Option<HashMap<String, String>>;

/// The state of `key_id` in a read of its user's keys.
pub fn key_state_in(keys: &UserKeys, key_id: &str) -> KeyState {
    match keys {
        None => KeyState::UserGone,
        Some(keys) => keys
            .get(key_id)
            .map_or(KeyState::KeyGone, |s| KeyState::Present(s.clone())),
    }
}

/// Who a connection's calls run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The account id.
    pub account: String,
    /// The caller's ARN (for an assumed role, naming the session).
    pub arn: String,
}

/// The configured AWS connections; each is built on first use and then reused.
pub struct Connections {
    configs: BTreeMap<String, AwsConnectionConfig>,
    built: tokio::sync::Mutex<HashMap<String, Arc<Connection>>>,
    /// Connection name → credentials that stand in for its chain (the demo's static keys).
    fixed: HashMap<String, Credentials>,
}

impl Connections {
    /// The connections of a project; nothing is resolved until one is used.
    pub fn new(configs: &BTreeMap<String, AwsConnectionConfig>) -> Connections {
        Connections::with_credentials(configs, HashMap::new())
    }

    /// Connections whose named ones sign with the given credentials instead of resolving any
    /// (`vigilo demo`, against its local IAM stand-in).
    pub fn with_credentials(
        configs: &BTreeMap<String, AwsConnectionConfig>,
        fixed: HashMap<String, Credentials>,
    ) -> Connections {
        Connections {
            configs: configs.clone(),
            built: tokio::sync::Mutex::new(HashMap::new()),
            fixed,
        }
    }

    /// The connection `name`, built the first time; an unknown name is an error.
    pub async fn get(&self, name: &str) -> Result<Arc<Connection>, AwsError> {
        let Some(config) = self.configs.get(name) else {
            let configured: Vec<&str> = self.configs.keys().map(String::as_str).collect();
            return Err(AwsError::UnknownConnection {
                name: name.to_string(),
                configured: if configured.is_empty() {
                    "none".into()
                } else {
                    configured.join(", ")
                },
            });
        };
        let mut built = self.built.lock().await;
        if let Some(c) = built.get(name) {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(Connection::build(config, self.fixed.get(name)).await);
        built.insert(name.to_string(), Arc::clone(&c));
        Ok(c)
    }
}

/// A connection's cached credentials for one session.
struct Cached {
    credentials: Credentials,
    fetched: Instant,
    identity: Option<Identity>,
}

/// The HTTPS client of the AWS SDK: hyper with rustls on ring, the one TLS stack vigilo builds
/// (the SDK's default would add aws-lc-sys, compiled with cmake).
pub fn https_client() -> aws_sdk_iam::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// One `[connection.aws.NAME]`: its clients and its credential cache.
pub struct Connection {
    config: AwsConnectionConfig,
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    base: Option<SharedCredentialsProvider>,
    cache: tokio::sync::Mutex<HashMap<String, Cached>>,
    /// The region calls are signed for when an action names none.
    region: String,
    /// `endpoint_url`, or `AWS_ENDPOINT_URL` (what the SDK clients use), for [`signed`] calls.
    endpoint_url: Option<String>,
    /// For the calls signed with SigV4 by vigilo itself ([`signed`]).
    http: reqwest::Client,
}

impl Connection {
    async fn build(config: &AwsConnectionConfig, fixed: Option<&Credentials>) -> Connection {
        let http = https_client();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http.clone())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(OPERATION_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            );
        if let Some(profile) = &config.profile {
            // A named profile is this connection's identity: unlike the bare chain, AWS_* credential
            // variables of the environment do not take precedence over it (as with `aws --profile`).
            let provider_config =
                aws_config::provider_config::ProviderConfig::default().with_http_client(http);
            loader = loader.profile_name(profile).credentials_provider(
                aws_config::profile::ProfileFileCredentialsProvider::builder()
                    .configure(&provider_config)
                    .profile_name(profile)
                    .build(),
            );
        }
        if let Some(credentials) = fixed {
            loader = loader.credentials_provider(credentials.clone());
        }
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        let region = sdk
            .region()
            .cloned()
            .unwrap_or_else(|| Region::from_static(IAM_REGION));
        // The IAM client never resolves credentials itself: every call brings the session's
        // (cached here for `ttl`), so one client serves every approval.
        let iam = aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::config::Builder::from(&sdk)
                .region(region.clone())
                .identity_cache(aws_sdk_iam::config::IdentityCache::no_cache())
                .build(),
        );
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&sdk)
                .region(region.clone())
                .build(),
        );
        tracing::debug!(connection = %config.name, "AWS connection built");
        Connection {
            config: config.clone(),
            iam,
            sts,
            base: sdk.credentials_provider(),
            cache: tokio::sync::Mutex::new(HashMap::new()),
            region: region.to_string(),
            endpoint_url: sdk.endpoint_url().map(str::to_string),
            http: reqwest::Client::builder()
                .timeout(ATTEMPT_TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }

    /// The connection's settings, as configured.
    pub fn config(&self) -> &AwsConnectionConfig {
        &self.config
    }

    /// The connection's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The credential cache's key of `session`: the session for a role, one entry otherwise.
    fn cache_key<'s>(&self, session: &'s str) -> &'s str {
        if self.config.role_arn.is_some() {
            session
        } else {
            ""
        }
    }

    /// Credentials for `session` (the STS session name when the connection assumes a role),
    /// from the cache while they are younger than `ttl` and not about to expire.
    pub(crate) async fn credentials(&self, session: &str) -> Result<Credentials, AwsError> {
        let key = self.cache_key(session);
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        cache.retain(|_, c| fresh(c, now, self.config.ttl));
        if let Some(c) = cache.get(key) {
            return Ok(c.credentials.clone());
        }
        let credentials = self.resolve(session).await?;
        crate::redact::also(
            std::iter::once(credentials.secret_access_key().to_string())
                .chain(credentials.session_token().map(str::to_string)),
        );
        cache.insert(
            key.to_string(),
            Cached {
                credentials: credentials.clone(),
                fetched: now,
                identity: None,
            },
        );
        Ok(credentials)
    }

    /// Resolves credentials afresh: the chain (or profile), then AssumeRole when `role_arn` is set.
    async fn resolve(&self, session: &str) -> Result<Credentials, AwsError> {
        let call = |operation: &'static str, detail: String| AwsError::Call {
            connection: self.config.name.clone(),
            operation,
            detail,
        };
        let Some(role_arn) = &self.config.role_arn else {
            let Some(base) = &self.base else {
                return Err(call(
                    "credentials",
                    "no credentials provider is configured".into(),
                ));
            };
            return base
                .provide_credentials()
                .await
                .map_err(|e| AwsError::from_credentials(&self.config, &e));
        };
        let out = self
            .sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.config, "AssumeRole", e))?;
        let c = out
            .credentials()
            .ok_or_else(|| call("AssumeRole", "STS answered without credentials".into()))?;
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        let credentials = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            expiry,
            "vigilo-assume-role",
        );
        tracing::info!(connection = %self.config.name, role = %role_arn, session, "assumed role");
        Ok(credentials)
    }

    /// Who the calls of `session` run as (GetCallerIdentity, once per cached credentials).
    pub async fn identity(&self, session: &str) -> Result<Identity, AwsError> {
        let credentials = self.credentials(session).await?;
        let key = self.cache_key(session);
        if let Some(id) = self
            .cache
            .lock()
            .await
            .get(key)
            .and_then(|c| c.identity.clone())
        {
            return Ok(id);
        }
        let out = self
            .sts
            .get_caller_identity()
            .customize()
            .config_override(
                aws_sdk_sts::config::Builder::default().credentials_provider(credentials),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.config, "GetCallerIdentity", e))?;
        let id = Identity {
            account: out.account().unwrap_or_default().to_string(),
            arn: out.arn().unwrap_or_default().to_string(),
        };
        if let Some(c) = self.cache.lock().await.get_mut(key) {
            c.identity = Some(id.clone());
        }
        Ok(id)
    }

    /// The override a call is made with: `scope`'s credentials, and its region when it names
    /// one (for IAM, the region picks the partition's endpoint and signing region).
    fn with(&self, credentials: Credentials, scope: Scope<'_>) -> aws_sdk_iam::config::Builder {
        let with = aws_sdk_iam::config::Builder::default().credentials_provider(credentials);
        match scope.region {
            Some(region) => with.region(Region::new(region.to_string())),
            None => with,
        }
    }

    /// The IAM client and the config override that brings `scope`'s credentials (and region)
    /// to a call.
    pub async fn iam(
        &self,
        scope: Scope<'_>,
    ) -> Result<(&aws_sdk_iam::Client, aws_sdk_iam::config::Builder), AwsError> {
        let credentials = self.credentials(scope.session).await?;
        Ok((&self.iam, self.with(credentials, scope)))
    }

    /// The status of `user`'s key `key_id` (`ListAccessKeys`, every page).
    pub async fn key_state(
        &self,
        scope: Scope<'_>,
        user: &str,
        key_id: &str,
    ) -> Result<KeyState, AwsError> {
        Ok(key_state_in(&self.user_keys(scope, user).await?, key_id))
    }

    /// Every access key of `user` with its status (`ListAccessKeys`, all pages); `None` when
    /// the user does not exist.
    pub async fn user_keys(&self, scope: Scope<'_>, user: &str) -> Result<UserKeys, AwsError> {
        let credentials = self.credentials(scope.session).await?;
        let mut marker: Option<String> = None;
        let mut keys = HashMap::new();
        loop {
            let result = self
                .iam
                .list_access_keys()
                .user_name(user)
                .set_marker(marker.take())
                .customize()
                .config_override(self.with(credentials.clone(), scope))
                .send()
                .await;
            let out = match result {
                Ok(out) => out,
                Err(e) if e.code() == Some("NoSuchEntity") => return Ok(None),
                Err(e) => return Err(AwsError::from_sdk(&self.config, "ListAccessKeys", e)),
            };
            for k in out.access_key_metadata() {
                if let Some(id) = k.access_key_id() {
                    let status = k.status().map_or("unknown", StatusType::as_str);
                    keys.insert(id.to_string(), status.to_string());
                }
            }
            match (out.is_truncated(), out.marker()) {
                (true, Some(m)) => marker = Some(m.to_string()),
                _ => return Ok(Some(keys)),
            }
        }
    }

    /// `UpdateAccessKey`; `Ok(None)` when the key or user is gone (NoSuchEntity), else AWS's request id.
    pub async fn update_access_key(
        &self,
        scope: Scope<'_>,
        user: &str,
        key_id: &str,
        status: &str,
    ) -> Result<Option<String>, AwsError> {
        let credentials = self.credentials(scope.session).await?;
        let result = self
            .iam
            .update_access_key()
            .user_name(user)
            .access_key_id(key_id)
            .status(StatusType::from(status))
            .customize()
            .config_override(self.with(credentials, scope))
            .send()
            .await;
        self.answer("UpdateAccessKey", result)
    }

    /// `DeleteAccessKey`; `Ok(None)` when the key or user is gone (NoSuchEntity), else AWS's request id.
    pub async fn delete_access_key(
        &self,
        scope: Scope<'_>,
        user: &str,
        key_id: &str,
    ) -> Result<Option<String>, AwsError> {
        let credentials = self.credentials(scope.session).await?;
        let result = self
            .iam
            .delete_access_key()
            .user_name(user)
            .access_key_id(key_id)
            .customize()
            .config_override(self.with(credentials, scope))
            .send()
            .await;
        self.answer("DeleteAccessKey", result)
    }

    /// A changing call's answer: AWS's request id, `None` for NoSuchEntity, else the error.
    fn answer<O, E, R>(
        &self,
        operation: &'static str,
        result: Result<O, SdkError<E, R>>,
    ) -> Result<Option<String>, AwsError>
    where
        O: RequestId,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        match result {
            Ok(out) => Ok(Some(out.request_id().unwrap_or_default().to_string())),
            Err(e) if e.code() == Some("NoSuchEntity") => Ok(None),
            Err(e) => Err(AwsError::from_sdk(&self.config, operation, e)),
        }
    }
}

/// Whether cached credentials may still be used: younger than `ttl`, not within a minute of expiry.
fn fresh(c: &Cached, now: Instant, ttl: Duration) -> bool {
    let young = now.duration_since(c.fetched) < ttl;
    let lasting = c.credentials.expiry().is_none_or(|at| {
        at.duration_since(SystemTime::now())
            .is_ok_and(|left| left > REFRESH_BEFORE)
    });
    young && lasting
}

/// The STS session name of an action: it names vigilo and the approval (or the run, without one).
pub fn session_name(approval_id: Option<i64>, run_id: i64) -> String {
    match approval_id {
        Some(id) => format!("vigilo-approval-{id}"),
        None => format!("vigilo-run-{run_id}"),
    }
}

/// Where a connection's calls go, in words, for dry runs: its role or profile, region and endpoint.
pub fn describe_connection(config: Option<&AwsConnectionConfig>, name: &str) -> String {
    let Some(c) = config else {
        return format!("connection {name}, which is not configured");
    };
    let mut parts = vec![format!("connection {name}")];
    if let Some(arn) = &c.role_arn {
        let account = arn.split(':').nth(4).unwrap_or_default();
        parts.push(format!("account {account} as {arn}"));
    }
    if let Some(p) = &c.profile {
        parts.push(format!("profile {p}"));
    }
    if c.role_arn.is_none() && c.profile.is_none() {
        parts.push("the standard credential chain".into());
    }
    if let Some(r) = &c.region {
        parts.push(format!("region {r}"));
    }
    if let Some(e) = &c.endpoint_url {
        parts.push(format!("endpoint {e}"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(expiry: Option<SystemTime>, age: Duration) -> Cached {
        Cached {
            credentials: Credentials::new("AKID", "secret", None, expiry, "test"),
            fetched: Instant::now() - age,
            identity: None,
        }
    }

    #[test]
    fn credentials_are_refreshed_after_ttl_or_before_expiry() {
        let ttl = Duration::from_secs(300);
        let now = Instant::now();
        assert!(fresh(&cached(None, Duration::from_secs(10)), now, ttl));
        assert!(!fresh(&cached(None, Duration::from_secs(301)), now, ttl));
        let soon = SystemTime::now() + Duration::from_secs(30);
        assert!(!fresh(&cached(Some(soon), Duration::ZERO), now, ttl));
        let later = SystemTime::now() + Duration::from_secs(3600);
        assert!(fresh(&cached(Some(later), Duration::ZERO), now, ttl));
    }

    #[test]
    fn session_names_name_vigilo_and_the_approval() {
        assert_eq!(session_name(Some(12), 3), "vigilo-approval-12");
        assert_eq!(session_name(None, 3), "vigilo-run-3");
    }

    #[tokio::test]
    async fn an_unknown_connection_is_an_error_naming_the_configured_ones() {
        let mut configs = BTreeMap::new();
        configs.insert(
            "aws_prod".to_string(),
            AwsConnectionConfig {
                name: "aws_prod".into(),
                profile: None,
                region: None,
                role_arn: None,
                endpoint_url: None,
                ttl: Duration::from_secs(300),
            },
        );
        let c = Connections::new(&configs);
        let err = c.get("aws_dev").await.err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "no [connection.aws.aws_dev] is configured (configured: aws_prod): add it to config/aws.toml or correct the action's connection; vigilo never falls back to another account, so nothing was called"
            )
        );
    }
}
