//! AWS calls vigilo signs itself with SigV4 (the `aws-sigv4` crate of the SDK family): any
//! Query-protocol API (EC2, IAM, SNS, RDS, …) and S3's REST-XML bucket subresources, with the
//! connection's cached credentials, region and `endpoint_url`.
//!
//! This is how vigilo reaches services without building their SDK crates (aws-sdk-ec2 alone
//! costs minutes of a release build). Throttling, 429 and 5xx answers are retried like the
//! SDK's standard mode: at most [`MAX_ATTEMPTS`] attempts, exponential backoff with full
//! jitter from one second, capped at 20 s; AccessDenied and every other error are not.
//! Requests are never logged: their headers carry the signature and the session token.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;

use super::xml::Element;
use super::{AwsError, Connection};

/// Attempts of one call, the first included (the SDK's standard retry mode).
pub const MAX_ATTEMPTS: u32 = 3;

/// The first retry's longest wait.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// No retry waits longer.
const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// Error codes that mean "slow down": retried, like 5xx.
const THROTTLING: [&str; 12] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
];

/// What AWS answered with a 2xx status.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// AWS's request id (empty when it gave none).
    pub request_id: String,
    /// The parsed body (an empty element for an empty body).
    pub body: Element,
    /// The body as sent.
    pub raw: String,
}

/// One S3 bucket subresource call (`GET /BUCKET?versioning`, …).
#[derive(Debug, Clone)]
pub struct S3Call<'a> {
    /// GET, PUT or DELETE.
    pub method: reqwest::Method,
    /// The bucket.
    pub bucket: &'a str,
    /// `versioning`, `publicAccessBlock`, `tagging`.
    pub subresource: &'a str,
    /// An XML body for PUT.
    pub body: Option<String>,
    /// The operation's name for errors (`PutBucketVersioning`).
    pub operation: &'static str,
}

/// One Query-protocol call.
#[derive(Debug, Clone)]
pub struct QueryCall<'a> {
    /// The signing name and endpoint prefix (`ec2`, `iam`, `sns`).
    pub service: &'a str,
    /// The API version (`2016-11-15`).
    pub version: &'a str,
    /// The action (`RevokeSecurityGroupIngress`).
    pub action: &'a str,
    /// Its parameters, in order.
    pub params: &'a [(String, String)],
}

/// A `&'static str` for an operation named at run time (an `aws.api` action): each distinct
/// name is kept once for the life of the process, as [`AwsError`] names operations statically.
pub fn operation_name(name: &str) -> &'static str {
    static NAMES: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Mutex::default);
    let Ok(mut names) = NAMES.lock() else {
        return "AWS API call";
    };
    if let Some(n) = names.get(name) {
        return n;
    }
    let n: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(n);
    n
}

impl Connection {
    /// The region of a call: the action's, else the connection's.
    pub fn region_for(&self, region: Option<&str>) -> String {
        region
            .filter(|r| !r.is_empty())
            .unwrap_or(&self.region)
            .to_string()
    }

    /// The endpoint of a Query-protocol service in `region`: the connection's `endpoint_url`,
    /// else AWS's (IAM is global, in us-east-1).
    fn query_endpoint(&self, service: &str, region: &str) -> (String, String) {
        if let Some(url) = &self.endpoint_url {
            return (format!("{}/", url.trim_end_matches('/')), region.into());
        }
        match service {
            "iam" => ("https://iam.amazonaws.com/".into(), "us-east-1".into()),
            _ => (
                format!("https://{service}.{region}.amazonaws.com/"),
                region.into(),
            ),
        }
    }

    /// The URL of a bucket's subresource: path style under `endpoint_url`, else AWS's
    /// virtual-hosted style (path style for names with dots, which TLS cannot cover).
    fn s3_url(&self, bucket: &str, subresource: &str, region: &str) -> String {
        let bucket_path = bucket_path(bucket);
        match &self.endpoint_url {
            Some(url) => format!("{}/{bucket_path}?{subresource}", url.trim_end_matches('/')),
            None if bucket.contains('.') => {
                format!("https://s3.{region}.amazonaws.com/{bucket_path}?{subresource}")
            }
            None => format!("https://{bucket_path}.s3.{region}.amazonaws.com/?{subresource}"),
        }
    }

    /// A Query-protocol call (form-encoded POST), signed for `session`.
    pub async fn query(
        &self,
        session: &str,
        call: &QueryCall<'_>,
        region: Option<&str>,
        operation: &'static str,
    ) -> Result<Answer, AwsError> {
        let region = self.region_for(region);
        let (url, signing_region) = self.query_endpoint(call.service, &region);
        let mut form: Vec<(&str, &str)> = vec![("Action", call.action), ("Version", call.version)];
        form.extend(call.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let body = serde_urlencoded::to_string(&form).map_err(|e| AwsError::Call {
            connection: self.config.name.clone(),
            operation,
            detail: format!("parameters cannot be form-encoded: {e}"),
        })?;
        let request = Signed {
            method: reqwest::Method::POST,
            url,
            service: call.service,
            region: signing_region,
            content_type: "application/x-www-form-urlencoded; charset=utf-8",
            body: body.into_bytes(),
            s3: false,
        };
        self.send(session, &request, operation).await
    }

    /// An S3 bucket subresource call, signed for `session`. A bucket in another region than
    /// asked is followed once to the region S3 names (`x-amz-bucket-region`).
    pub async fn s3(
        &self,
        session: &str,
        call: &S3Call<'_>,
        region: Option<&str>,
    ) -> Result<Answer, AwsError> {
        let mut region = self.region_for(region);
        let mut followed = false;
        loop {
            let body = call.body.clone().unwrap_or_default().into_bytes();
            let request = Signed {
                method: call.method.clone(),
                url: self.s3_url(call.bucket, call.subresource, &region),
                service: "s3",
                region: region.clone(),
                content_type: "application/xml",
                body,
                s3: true,
            };
            match self.send(session, &request, call.operation).await {
                Err(AwsError::Service { ref message, .. })
                    if !followed && message.starts_with(MOVED) =>
                {
                    region = message[MOVED.len()..].to_string();
                    followed = true;
                }
                other => return other,
            }
        }
    }

    /// Signs and sends, retrying throttling and 5xx answers.
    async fn send(
        &self,
        session: &str,
        request: &Signed<'_>,
        operation: &'static str,
    ) -> Result<Answer, AwsError> {
        let mut attempt = 1;
        loop {
            let result = self.attempt(session, request, operation).await;
            let retry = match &result {
                Err(Failure::Answered { retryable, .. }) => *retryable,
                Err(Failure::NotSent(_)) => true,
                _ => false,
            };
            if !retry || attempt >= MAX_ATTEMPTS {
                return result.map_err(|f| f.into_error(&self.config.name, operation));
            }
            let ceiling = INITIAL_BACKOFF
                .saturating_mul(1 << (attempt - 1))
                .min(MAX_BACKOFF);
            let wait = ceiling.mul_f64(fastrand::f64());
            tracing::debug!(connection = %self.config.name, operation, attempt, ?wait, "retrying an AWS call");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        session: &str,
        request: &Signed<'_>,
        operation: &'static str,
    ) -> Result<Answer, Failure> {
        let credentials = self
            .credentials(session)
            .await
            .map_err(Failure::Credentials)?;
        let identity = credentials.into();
        let mut settings = SigningSettings::default();
        if request.s3 {
            // S3 signs the payload's hash as a header and the path as it is.
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&request.region)
            .name(request.service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| Failure::Local(format!("cannot sign: {e}")))?
            .into();
        let mut headers = vec![("content-type", request.content_type.to_string())];
        if request.s3 && !request.body.is_empty() {
            // S3 wants an integrity check of bodies (Content-MD5 or a flexible checksum).
            let digest = ring::digest::digest(&ring::digest::SHA256, &request.body);
            use base64::Engine as _;
            let sum = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
            headers.push(("x-amz-checksum-sha256", sum));
            headers.push(("x-amz-sdk-checksum-algorithm", "SHA256".into()));
        }
        let signable = SignableRequest::new(
            request.method.as_str(),
            &request.url,
            headers.iter().map(|(k, v)| (*k, v.as_str())),
            SignableBody::Bytes(&request.body),
        )
        .map_err(|e| Failure::Local(format!("cannot sign: {e}")))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| Failure::Local(format!("cannot sign: {e}")))?
            .into_parts();
        let mut builder = self
            .http
            .request(request.method.clone(), &request.url)
            .header("user-agent", concat!("vigilo/", env!("CARGO_PKG_VERSION")))
            .body(request.body.clone());
        for (name, value) in headers.iter().map(|(k, v)| (*k, v.as_str())) {
            builder = builder.header(name, value);
        }
        for (name, value) in instructions.headers() {
            builder = builder.header(name, value);
        }
        let response = builder.send().await.map_err(|e| {
            if e.is_connect() {
                Failure::NotSent(e.to_string())
            } else {
                Failure::Lost(e.to_string())
            }
        })?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let request_id = header("x-amzn-requestid")
            .or_else(|| header("x-amz-request-id"))
            .unwrap_or_default();
        let bucket_region = header("x-amz-bucket-region");
        let raw = response
            .text()
            .await
            .map_err(|e| Failure::Lost(e.to_string()))?;
        let body = if raw.trim().is_empty() {
            Element::default()
        } else {
            Element::parse(&raw).unwrap_or_default()
        };
        let request_id = body
            .find("RequestId")
            .or_else(|| body.find("RequestID"))
            .or_else(|| body.find("requestId"))
            .map(|e| e.text.clone())
            .filter(|id| !id.is_empty())
            .unwrap_or(request_id);
        if (200..300).contains(&status) {
            return Ok(Answer {
                status,
                request_id,
                body,
                raw,
            });
        }
        let text = |name: &str| body.find(name).map(|e| e.text.clone());
        let code = text("Code").unwrap_or_else(|| format!("HTTP {status}"));
        let message = match (status, bucket_region) {
            (301, Some(region)) => format!("{MOVED}{region}"),
            _ => text("Message").unwrap_or_else(|| excerpt(&raw)),
        };
        tracing::debug!(operation, status, code = %code, "AWS answered with an error");
        let retryable = status >= 500 || status == 429 || THROTTLING.contains(&code.as_str());
        Err(Failure::Answered {
            code,
            message,
            retryable,
        })
    }
}

/// The message of a 301 that names the bucket's region (followed, never shown).
const MOVED: &str = "the bucket is in region ";

/// A request to sign.
struct Signed<'a> {
    method: reqwest::Method,
    url: String,
    service: &'a str,
    region: String,
    content_type: &'static str,
    body: Vec<u8>,
    s3: bool,
}

/// Why one attempt failed.
enum Failure {
    /// No credentials.
    Credentials(AwsError),
    /// Could not sign or build the request.
    Local(String),
    /// The connection could not be made: nothing reached AWS.
    NotSent(String),
    /// Sent, but no complete answer came back.
    Lost(String),
    /// AWS answered with an error.
    Answered {
        code: String,
        message: String,
        retryable: bool,
    },
}

impl Failure {
    fn into_error(self, connection: &str, operation: &'static str) -> AwsError {
        let call = |detail: String| AwsError::Call {
            connection: connection.to_string(),
            operation,
            detail,
        };
        match self {
            Failure::Credentials(e) => e,
            Failure::Local(d) => call(d),
            Failure::NotSent(d) => call(format!("could not connect: {d}")),
            Failure::Lost(d) => call(format!("no answer: {d}")),
            Failure::Answered {
                code,
                message,
                retryable,
            } => AwsError::answered(
                connection,
                operation,
                &code,
                &crate::cause::one_line(&message),
                retryable,
            ),
        }
    }
}

/// A bucket name as a URL path segment (bucket names are letters, digits, `.` and `-`; anything
/// else is percent-encoded so it cannot change the URL).
fn bucket_path(bucket: &str) -> String {
    bucket
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The start of a body that is not AWS's XML.
fn excerpt(raw: &str) -> String {
    raw.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_kept_once() {
        let a = operation_name("CreateTags");
        let b = operation_name(&String::from("CreateTags"));
        assert!(std::ptr::eq(a, b));
        assert_eq!(a, "CreateTags");
    }

    #[test]
    fn bucket_names_cannot_change_the_url() {
        assert_eq!(bucket_path("my.bucket-1"), "my.bucket-1");
        assert_eq!(bucket_path("a/../b?x"), "a%2F..%2Fb%3Fx");
    }
}
