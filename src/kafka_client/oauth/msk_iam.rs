//! AWS MSK IAM tokens (`[kafka.aws_msk_iam]`): the signed `kafka-cluster:Connect` request that
//! MSK takes as an OAUTHBEARER token, made by AWS's own signer (`aws-msk-iam-sasl-signer`,
//! SigV4 by `aws-sigv4`) with credentials from the standard AWS chain — environment, profile,
//! web identity (EKS IRSA), ECS and EC2 instance metadata — loaded once and cached by the AWS
//! SDK, which refreshes them before they expire. A token lives 15 minutes from its signing, and
//! never longer than the credentials that signed it.

use std::sync::OnceLock;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use super::{AwsMskIamConfig, Token, TokenError, TokenSource, FETCH_TIMEOUT};

/// Signs MSK IAM tokens.
pub struct Signer {
    region: String,
    /// The credentials' source: the standard chain, made on the first fetch.
    credentials: OnceLock<SharedCredentialsProvider>,
    /// Where the AWS SDK's work runs (its credential cache and HTTP clients outlive one fetch).
    runtime: tokio::runtime::Runtime,
}

impl Signer {
    /// A signer for `region` with the standard credential chain.
    pub fn new(config: &AwsMskIamConfig) -> Result<Self, TokenError> {
        Self::build(&config.region, None)
    }

    /// A signer for `region` with the credentials `provider` gives.
    pub fn with_credentials(region: &str, provider: SharedCredentialsProvider) -> Result<Self, TokenError> {
        Self::build(region, Some(provider))
    }

    fn build(region: &str, provider: Option<SharedCredentialsProvider>) -> Result<Self, TokenError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("msk-iam-signer")
            .enable_all()
            .build()
            .map_err(|e| TokenError::MskIam { region: region.into(), reason: e.to_string() })?;
        let credentials = OnceLock::new();
        if let Some(provider) = provider {
            let _ = credentials.set(provider);
        }
        Ok(Self { region: region.to_string(), credentials, runtime })
    }

    async fn sign(&self) -> Result<Token, String> {
        let region = Region::new(self.region.clone());
        let provider = match self.credentials.get() {
            Some(provider) => provider.clone(),
            None => {
                let config = aws_config::defaults(BehaviorVersion::latest()).region(region.clone()).load().await;
                let provider =
                    config.credentials_provider().ok_or("the AWS configuration has no credentials provider")?;
                self.credentials.get_or_init(|| provider).clone()
            }
        };
        let credentials =
            provider.provide_credentials().await.map_err(|e| format!("no AWS credentials: {}", error_chain(&e)))?;
        let expiry = credentials.expiry();
        let fixed = SharedCredentialsProvider::new(credentials);
        let (value, expires_at_ms) =
            aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider(region, fixed)
                .await
                .map_err(|e| error_chain(&e))?;
        let credentials_end_ms =
            expiry.and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_millis() as i64);
        let expires_at_ms = credentials_end_ms.map_or(expires_at_ms, |end| end.min(expires_at_ms));
        Ok(Token { value, principal: String::new(), expires_at_ms })
    }

    pub fn region(&self) -> &str {
        &self.region
    }
}

impl TokenSource for Signer {
    fn fetch(&self, _now_ms: i64) -> Result<Token, TokenError> {
        let fail = |reason: String| TokenError::MskIam { region: self.region.clone(), reason };
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.runtime
                        .block_on(async { tokio::time::timeout(FETCH_TIMEOUT, self.sign()).await })
                        .map_err(|_| TokenError::Timeout(FETCH_TIMEOUT))?
                        .map_err(fail)
                })
                .join()
                .unwrap_or_else(|_| Err(fail("the signer panicked".into())))
        })
    }

    fn describe(&self) -> String {
        format!("AWS MSK IAM in {}", self.region)
    }
}

/// `error` with its sources, as one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut said = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        said.push_str(": ");
        said.push_str(&cause.to_string());
        source = cause.source();
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use base64::Engine as _;

    #[test]
    fn a_token_is_a_presigned_connect_request_to_the_regions_cluster_endpoint() {
        let credentials =
            Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None, None, "test");
        let signer = Signer::with_credentials("eu-west-1", SharedCredentialsProvider::new(credentials)).unwrap();
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let token = signer.fetch(now_ms).unwrap();
        let url =
            String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&token.value).unwrap()).unwrap();
        assert!(url.starts_with("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&"), "{url}");
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Expires=900",
            "X-Amz-Signature=",
            "X-Amz-Credential=AKIDEXAMPLE%2F",
        ] {
            assert!(url.contains(part), "{part} in {url}");
        }
        assert!(url.contains("%2Feu-west-1%2Fkafka-cluster%2Faws4_request"), "the credential scope: {url}");
        // 15 minutes from the signing, which is now (to the second).
        let lifetime = token.expires_at_ms - now_ms;
        assert!((898_000..=901_000).contains(&lifetime), "lifetime {lifetime} ms");
    }

    #[test]
    fn a_token_never_outlives_the_credentials_that_signed_it() {
        let in_five_minutes = std::time::SystemTime::now() + std::time::Duration::from_secs(300);
        let credentials =
            Credentials::new("AKIDEXAMPLE", "secret", Some("session".into()), Some(in_five_minutes), "test");
        let signer = Signer::with_credentials("us-east-1", SharedCredentialsProvider::new(credentials)).unwrap();
        let token = signer.fetch(0).unwrap();
        let end = in_five_minutes.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        assert_eq!(token.expires_at_ms, end);
    }
}
