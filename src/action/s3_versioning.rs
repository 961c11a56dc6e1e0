//! `aws.s3.put_bucket_versioning`: turns a bucket's versioning on (`Enabled`) or off
//! (`Suspended`).
//!
//! Reads `GetBucketVersioning` first; undo puts back the status read (`Suspended` when
//! versioning was never enabled: S3 cannot go back to "never").

use serde_json::{Value, json};

use super::params::{self, Param, Params};
use super::read_first::{Aws, Found, ReadFirst, Written, gone_on};
use crate::aws::signed::S3Call;
use crate::aws::xml;

/// `aws.s3.put_bucket_versioning`.
pub struct PutBucketVersioning;

const PARAMS: &[Param] = &[
    params::CONNECTION,
    params::REGION,
    Param::text("bucket"),
    Param::text("status"),
];

/// S3's answer when a bucket does not exist.
pub(super) const NO_SUCH_BUCKET: &str = "NoSuchBucket";

/// Why a bucket's action has nothing to do.
pub(super) fn bucket_gone(aws: &Aws<'_>, bucket: &str) -> String {
    format!(
        "bucket {bucket} no longer exists in connection {} ({NO_SUCH_BUCKET})",
        aws.connection.name()
    )
}

/// An S3 call on `bucket`'s `subresource`.
pub(super) fn s3_call<'a>(
    method: reqwest::Method,
    bucket: &'a str,
    subresource: &'a str,
    body: Option<String>,
    operation: &'static str,
) -> S3Call<'a> {
    S3Call {
        method,
        bucket,
        subresource,
        body,
        operation,
    }
}

/// Makes the write `call`: done with S3's request id, or gone when the bucket no longer exists.
pub(super) async fn s3_write(aws: &Aws<'_>, call: &S3Call<'_>) -> Result<Written, String> {
    match aws.s3(call).await {
        Ok(answer) => Ok(Written::Done(answer.request_id)),
        Err(e) if gone_on(&e, &[NO_SUCH_BUCKET]) => {
            Ok(Written::Gone(bucket_gone(aws, call.bucket)))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// S3's XML namespace for bodies vigilo sends.
pub(super) const S3_XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

#[async_trait::async_trait]
impl ReadFirst for PutBucketVersioning {
    fn name(&self) -> &'static str {
        "aws.s3.put_bucket_versioning"
    }

    fn params(&self) -> &'static [Param] {
        PARAMS
    }

    fn check(&self, name: &str, value: &Value) -> Result<Option<Value>, String> {
        let status = value.as_str().unwrap_or_default();
        if name == "status" && status != "Enabled" && status != "Suspended" {
            return Err(format!(
                "must be Enabled or Suspended (or a template), not {status:?}"
            ));
        }
        Ok(None)
    }

    fn call(&self, p: &Params<'_>) -> String {
        format!(
            "s3:PutBucketVersioning Bucket={} VersioningConfiguration.Status={}",
            p.opt_text("bucket").unwrap_or_default(),
            p.opt_text("status").unwrap_or_default()
        )
    }

    fn operation(&self) -> &'static str {
        "PutBucketVersioning"
    }

    async fn read(&self, aws: &Aws<'_>, p: &Params<'_>) -> Result<Found, String> {
        let bucket = p.text("bucket")?;
        let call = s3_call(
            reqwest::Method::GET,
            bucket,
            "versioning",
            None,
            "GetBucketVersioning",
        );
        match aws.s3(&call).await {
            Ok(answer) => {
                let status = answer.body.text_of("Status").unwrap_or_default();
                Ok(Found::State(json!({"status": status})))
            }
            Err(e) if gone_on(&e, &[NO_SUCH_BUCKET]) => Ok(Found::Gone(bucket_gone(aws, bucket))),
            Err(e) => Err(e.to_string()),
        }
    }

    fn as_wanted(&self, p: &Params<'_>, state: &Value) -> Result<Option<String>, String> {
        let wanted = p.text("status")?;
        let now = state["status"].as_str().unwrap_or_default();
        let bucket = p.opt_text("bucket").unwrap_or_default();
        Ok(match now {
            "" if wanted == "Suspended" => {
                Some(format!("versioning of bucket {bucket} was never enabled"))
            }
            now if now == wanted => Some(format!("versioning of bucket {bucket} is already {now}")),
            _ => None,
        })
    }

    async fn write(
        &self,
        aws: &Aws<'_>,
        p: &Params<'_>,
        _before: &Value,
    ) -> Result<Written, String> {
        let bucket = p.text("bucket")?;
        let body = format!(
            "<VersioningConfiguration xmlns=\"{S3_XMLNS}\"><Status>{}</Status></VersioningConfiguration>",
            xml::escape(p.text("status")?)
        );
        let call = s3_call(
            reqwest::Method::PUT,
            bucket,
            "versioning",
            Some(body),
            "PutBucketVersioning",
        );
        s3_write(aws, &call).await
    }

    fn undo(&self, p: &Params<'_>, before: &Value) -> Result<(&'static str, Value), String> {
        let previous = match before["status"].as_str().unwrap_or_default() {
            "" => "Suspended",
            s => s,
        };
        Ok((
            "aws.s3.put_bucket_versioning",
            json!({"bucket": p.values["bucket"], "status": previous}),
        ))
    }
}
