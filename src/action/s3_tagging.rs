//! `aws.s3.tag_bucket`: merges `tags` into a bucket's tag set (`replace = true`: makes the tag
//! set exactly `tags`, which is how an undo puts back the set read before).
//!
//! Reads `GetBucketTagging` first: every tag already with its value needs no change.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::params::{self, Kind, Need, Param, Params};
use super::read_first::{Aws, Found, ReadFirst, Written, gone_on};
use super::s3_versioning::{NO_SUCH_BUCKET, S3_XMLNS, bucket_gone, s3_call, s3_write};
use crate::aws::xml;

/// `aws.s3.tag_bucket`.
pub struct TagBucket;

const PARAMS: &[Param] = &[
    params::CONNECTION,
    params::REGION,
    Param::text("bucket"),
    Param::new("tags", Kind::Table, Need::Required),
    Param::new("replace", Kind::Bool, Need::Default("false")),
];

/// The tag set of a `before`.
fn tags_of(state: &Value) -> BTreeMap<String, String> {
    state["tags"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl ReadFirst for TagBucket {
    fn name(&self) -> &'static str {
        "aws.s3.tag_bucket"
    }

    fn params(&self) -> &'static [Param] {
        PARAMS
    }

    fn call(&self, p: &Params<'_>) -> String {
        let tags: Vec<String> = p
            .table("tags")
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let how = if p.bool("replace").unwrap_or(false) {
            "replacing the tag set"
        } else {
            "merged into the tag set read first"
        };
        format!(
            "s3:PutBucketTagging Bucket={} Tags {{{}}} ({how})",
            p.opt_text("bucket").unwrap_or_default(),
            tags.join(", ")
        )
    }

    fn operation(&self) -> &'static str {
        "PutBucketTagging"
    }

    async fn read(&self, aws: &Aws<'_>, p: &Params<'_>) -> Result<Found, String> {
        let bucket = p.text("bucket")?;
        let call = s3_call(
            reqwest::Method::GET,
            bucket,
            "tagging",
            None,
            "GetBucketTagging",
        );
        match aws.s3(&call).await {
            Ok(answer) => {
                let mut tags = serde_json::Map::new();
                for tag in answer
                    .body
                    .child("TagSet")
                    .into_iter()
                    .flat_map(|s| s.all("Tag"))
                {
                    if let Some(key) = tag.text_of("Key") {
                        tags.insert(
                            key.to_string(),
                            json!(tag.text_of("Value").unwrap_or_default()),
                        );
                    }
                }
                Ok(Found::State(json!({"tags": tags})))
            }
            Err(e) if gone_on(&e, &["NoSuchTagSet", "NoSuchTagSetError"]) => {
                Ok(Found::State(json!({"tags": {}})))
            }
            Err(e) if gone_on(&e, &[NO_SUCH_BUCKET]) => Ok(Found::Gone(bucket_gone(aws, bucket))),
            Err(e) => Err(e.to_string()),
        }
    }

    fn as_wanted(&self, p: &Params<'_>, state: &Value) -> Result<Option<String>, String> {
        let wanted = p.table("tags")?;
        let now = tags_of(state);
        let same = if p.bool("replace")? {
            now == wanted
        } else {
            wanted.iter().all(|(k, v)| now.get(k) == Some(v))
        };
        Ok(same.then(|| {
            format!(
                "bucket {} already has these tags",
                p.opt_text("bucket").unwrap_or_default()
            )
        }))
    }

    async fn write(
        &self,
        aws: &Aws<'_>,
        p: &Params<'_>,
        before: &Value,
    ) -> Result<Written, String> {
        let bucket = p.text("bucket")?;
        let mut tags = if p.bool("replace")? {
            BTreeMap::new()
        } else {
            tags_of(before)
        };
        tags.extend(p.table("tags")?);
        let call = if tags.is_empty() {
            s3_call(
                reqwest::Method::DELETE,
                bucket,
                "tagging",
                None,
                "DeleteBucketTagging",
            )
        } else {
            let set: String = tags
                .iter()
                .map(|(k, v)| {
                    format!(
                        "<Tag><Key>{}</Key><Value>{}</Value></Tag>",
                        xml::escape(k),
                        xml::escape(v)
                    )
                })
                .collect();
            let body = format!("<Tagging xmlns=\"{S3_XMLNS}\"><TagSet>{set}</TagSet></Tagging>");
            s3_call(
                reqwest::Method::PUT,
                bucket,
                "tagging",
                Some(body),
                "PutBucketTagging",
            )
        };
        s3_write(aws, &call).await
    }

    fn undo(&self, p: &Params<'_>, before: &Value) -> Result<(&'static str, Value), String> {
        Ok((
            "aws.s3.tag_bucket",
            json!({"bucket": p.values["bucket"], "tags": before["tags"], "replace": true}),
        ))
    }
}
