//! `aws.s3.put_public_access_block` and its reversal `aws.s3.delete_public_access_block`: a
//! bucket's public access block (the four settings that keep it from being public).
//!
//! Both read `GetPublicAccessBlock` first. Undoing a put restores the block read before, or
//! removes the block when there was none; undoing a delete puts back the block it removed.

use serde_json::{Map, Value, json};

use super::params::{self, Kind, Need, Param, Params};
use super::read_first::{Aws, Found, ReadFirst, Written, gone_on};
use super::s3_versioning::{NO_SUCH_BUCKET, S3_XMLNS, bucket_gone, s3_call, s3_write};

/// `aws.s3.put_public_access_block`.
pub struct PutPublicAccessBlock;

/// `aws.s3.delete_public_access_block` (what undoes a put on a bucket that had no block).
pub struct DeletePublicAccessBlock;

/// The four settings: (parameter, S3's element).
const SETTINGS: [(&str, &str); 4] = [
    ("block_public_acls", "BlockPublicAcls"),
    ("ignore_public_acls", "IgnorePublicAcls"),
    ("block_public_policy", "BlockPublicPolicy"),
    ("restrict_public_buckets", "RestrictPublicBuckets"),
];

const PUT_PARAMS: &[Param] = &[
    params::CONNECTION,
    params::REGION,
    Param::text("bucket"),
    Param::new("block_public_acls", Kind::Bool, Need::Default("true")),
    Param::new("ignore_public_acls", Kind::Bool, Need::Default("true")),
    Param::new("block_public_policy", Kind::Bool, Need::Default("true")),
    Param::new("restrict_public_buckets", Kind::Bool, Need::Default("true")),
];

const DELETE_PARAMS: &[Param] = &[params::CONNECTION, params::REGION, Param::text("bucket")];

/// S3's answer when a bucket has no block.
const NO_BLOCK: &str = "NoSuchPublicAccessBlockConfiguration";

/// The bucket's block (`{"block": {...}}`, or `{"block": null}` when it has none).
async fn read(aws: &Aws<'_>, p: &Params<'_>) -> Result<Found, String> {
    let bucket = p.text("bucket")?;
    let call = s3_call(
        reqwest::Method::GET,
        bucket,
        "publicAccessBlock",
        None,
        "GetPublicAccessBlock",
    );
    match aws.s3(&call).await {
        Ok(answer) => {
            let mut block = Map::new();
            for (param, element) in SETTINGS {
                let on = answer
                    .body
                    .text_of(element)
                    .is_some_and(|t| t.eq_ignore_ascii_case("true"));
                block.insert(param.to_string(), Value::Bool(on));
            }
            Ok(Found::State(json!({"block": block})))
        }
        Err(e) if gone_on(&e, &[NO_BLOCK]) => Ok(Found::State(json!({"block": null}))),
        Err(e) if gone_on(&e, &[NO_SUCH_BUCKET]) => Ok(Found::Gone(bucket_gone(aws, bucket))),
        Err(e) => Err(e.to_string()),
    }
}

/// The settings an action asks for.
fn wanted(p: &Params<'_>) -> Result<Map<String, Value>, String> {
    SETTINGS
        .iter()
        .map(|(param, _)| Ok((param.to_string(), Value::Bool(p.bool(param)?))))
        .collect()
}

#[async_trait::async_trait]
impl ReadFirst for PutPublicAccessBlock {
    fn name(&self) -> &'static str {
        "aws.s3.put_public_access_block"
    }

    fn params(&self) -> &'static [Param] {
        PUT_PARAMS
    }

    fn call(&self, p: &Params<'_>) -> String {
        let settings: Vec<String> = SETTINGS
            .iter()
            .map(|(param, element)| {
                format!(
                    "PublicAccessBlockConfiguration.{element}={}",
                    p.bool(param)
                        .map_or_else(|_| p.values[*param].to_string(), |b| b.to_string())
                )
            })
            .collect();
        format!(
            "s3:PutPublicAccessBlock Bucket={} {}",
            p.opt_text("bucket").unwrap_or_default(),
            settings.join(" ")
        )
    }

    fn operation(&self) -> &'static str {
        "PutPublicAccessBlock"
    }

    async fn read(&self, aws: &Aws<'_>, p: &Params<'_>) -> Result<Found, String> {
        read(aws, p).await
    }

    fn as_wanted(&self, p: &Params<'_>, state: &Value) -> Result<Option<String>, String> {
        let wanted = wanted(p)?;
        Ok(state["block"]
            .as_object()
            .filter(|now| **now == wanted)
            .map(|_| {
                format!(
                    "bucket {} already has this public access block",
                    p.opt_text("bucket").unwrap_or_default()
                )
            }))
    }

    async fn write(
        &self,
        aws: &Aws<'_>,
        p: &Params<'_>,
        _before: &Value,
    ) -> Result<Written, String> {
        let bucket = p.text("bucket")?;
        let wanted = wanted(p)?;
        let settings: String = SETTINGS
            .iter()
            .map(|(param, element)| format!("<{element}>{}</{element}>", wanted[*param]))
            .collect();
        let body = format!(
            "<PublicAccessBlockConfiguration xmlns=\"{S3_XMLNS}\">{settings}</PublicAccessBlockConfiguration>"
        );
        let call = s3_call(
            reqwest::Method::PUT,
            bucket,
            "publicAccessBlock",
            Some(body),
            "PutPublicAccessBlock",
        );
        s3_write(aws, &call).await
    }

    fn undo(&self, p: &Params<'_>, before: &Value) -> Result<(&'static str, Value), String> {
        match before["block"].as_object() {
            None => Ok((
                "aws.s3.delete_public_access_block",
                json!({"bucket": p.values["bucket"]}),
            )),
            Some(block) => {
                let mut params = block.clone();
                params.insert("bucket".into(), p.values["bucket"].clone());
                Ok(("aws.s3.put_public_access_block", Value::Object(params)))
            }
        }
    }
}

#[async_trait::async_trait]
impl ReadFirst for DeletePublicAccessBlock {
    fn name(&self) -> &'static str {
        "aws.s3.delete_public_access_block"
    }

    fn params(&self) -> &'static [Param] {
        DELETE_PARAMS
    }

    fn call(&self, p: &Params<'_>) -> String {
        format!(
            "s3:DeletePublicAccessBlock Bucket={}",
            p.opt_text("bucket").unwrap_or_default()
        )
    }

    fn operation(&self) -> &'static str {
        "DeletePublicAccessBlock"
    }

    async fn read(&self, aws: &Aws<'_>, p: &Params<'_>) -> Result<Found, String> {
        read(aws, p).await
    }

    fn as_wanted(&self, p: &Params<'_>, state: &Value) -> Result<Option<String>, String> {
        Ok(state["block"].is_null().then(|| {
            format!(
                "bucket {} has no public access block",
                p.opt_text("bucket").unwrap_or_default()
            )
        }))
    }

    async fn write(
        &self,
        aws: &Aws<'_>,
        p: &Params<'_>,
        _before: &Value,
    ) -> Result<Written, String> {
        let bucket = p.text("bucket")?;
        let call = s3_call(
            reqwest::Method::DELETE,
            bucket,
            "publicAccessBlock",
            None,
            "DeletePublicAccessBlock",
        );
        s3_write(aws, &call).await
    }

    fn undo(&self, p: &Params<'_>, before: &Value) -> Result<(&'static str, Value), String> {
        let mut params = before["block"]
            .as_object()
            .cloned()
            .ok_or("there was no block before it, so there is nothing to put back")?;
        params.insert("bucket".into(), p.values["bucket"].clone());
        Ok(("aws.s3.put_public_access_block", Value::Object(params)))
    }
}
