//! Approval link tokens: which approver may vote on which approval, until when.
//!
//! A token is `base64url(APPROVAL.APPROVER.EXPIRES).hex(HMAC-SHA256(secret, payload))`.
//! `EXPIRES` is the approval's deadline in Unix seconds (0: none); an approval
//! that is no longer pending refuses votes anyway. Signatures are compared in
//! constant time (`Mac::verify_slice`). [`links`] puts them in the approval page addresses
//! that messages carry.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The approval.
    pub approval_id: i64,
    /// The approver it was issued to.
    pub approver: String,
    /// When it stops working.
    pub expires: Option<DateTime<Utc>>,
}

/// Why a token is refused (the HTTP answer is 403 whatever the reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token vigilo issued, or altered.
    #[error("invalid token")]
    Invalid,
    /// Issued for another approval.
    #[error("token is for another approval")]
    OtherApproval,
    /// Past its approval's deadline.
    #[error("token expired")]
    Expired,
}

fn mac(secret: &str) -> HmacSha256 {
    // HMAC takes keys of any length.
    HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// Issues a token for `approver` on `approval_id`, valid until `expires`.
pub fn issue(
    secret: &str,
    approval_id: i64,
    approver: &str,
    expires: Option<DateTime<Utc>>,
) -> String {
    let payload = format!(
        "{approval_id}.{approver}.{}",
        expires.map_or(0, |t| t.timestamp())
    );
    let mut m = mac(secret);
    m.update(payload.as_bytes());
    let sig = hex::encode(m.finalize().into_bytes());
    format!("{}.{sig}", URL_SAFE_NO_PAD.encode(payload))
}

/// Checks `token` for `approval_id` at `now`.
pub fn verify(
    secret: &str,
    token: &str,
    approval_id: i64,
    now: DateTime<Utc>,
) -> Result<Grant, TokenError> {
    let (payload_b64, sig_hex) = token.split_once('.').ok_or(TokenError::Invalid)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| TokenError::Invalid)?;
    let sig = hex::decode(sig_hex).map_err(|_| TokenError::Invalid)?;
    let mut m = mac(secret);
    m.update(&payload);
    m.verify_slice(&sig).map_err(|_| TokenError::Invalid)?;
    let payload = String::from_utf8(payload).map_err(|_| TokenError::Invalid)?;
    let mut parts = payload.splitn(2, '.');
    let id: i64 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(TokenError::Invalid)?;
    let rest = parts.next().ok_or(TokenError::Invalid)?;
    let (approver, expires) = rest.rsplit_once('.').ok_or(TokenError::Invalid)?;
    let expires: i64 = expires.parse().map_err(|_| TokenError::Invalid)?;
    if id != approval_id {
        return Err(TokenError::OtherApproval);
    }
    let expires = (expires != 0)
        .then(|| Utc.timestamp_opt(expires, 0).single())
        .flatten();
    if expires.is_some_and(|t| t <= now) {
        return Err(TokenError::Expired);
    }
    Ok(Grant {
        approval_id: id,
        approver: approver.to_string(),
        expires,
    })
}

/// Per-approver approval links, when `[server] secret` is set (base: `base_url`, else `http://LISTEN`).
pub fn links(
    project: &crate::config::Project,
    id: i64,
    approvers: &[String],
    deadline: Option<DateTime<Utc>>,
) -> Vec<(String, String)> {
    let Some(server) = &project.server else {
        return Vec::new();
    };
    let Some(secret) = &server.secret else {
        return Vec::new();
    };
    let base = server
        .base_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", server.listen));
    approvers
        .iter()
        .map(|a| {
            let token = issue(secret.expose(), id, a, deadline);
            (a.clone(), format!("{base}/approvals/{id}?token={token}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_one_approval_and_one_approver() {
        let t = issue("s3cret", 7, "alice", None);
        let g = verify("s3cret", &t, 7, Utc::now()).unwrap();
        assert_eq!(
            (g.approval_id, g.approver.as_str(), g.expires),
            (7, "alice", None)
        );
        assert_eq!(
            verify("s3cret", &t, 8, Utc::now()),
            Err(TokenError::OtherApproval)
        );
        assert_eq!(
            verify("other", &t, 7, Utc::now()),
            Err(TokenError::Invalid),
            "another secret"
        );
    }

    #[test]
    fn tampering_and_expiry_are_refused() {
        let deadline = Utc::now() + chrono::Duration::hours(1);
        let t = issue("s3cret", 7, "alice", Some(deadline));
        assert!(verify("s3cret", &t, 7, Utc::now()).is_ok());
        assert_eq!(verify("s3cret", &t, 7, deadline), Err(TokenError::Expired));
        // Swap the approver in the payload, keep the signature.
        let (_, sig) = t.split_once('.').unwrap();
        let forged = format!(
            "{}.{sig}",
            URL_SAFE_NO_PAD.encode(format!("7.mallory.{}", deadline.timestamp()))
        );
        assert_eq!(
            verify("s3cret", &forged, 7, Utc::now()),
            Err(TokenError::Invalid)
        );
        for junk in ["", ".", "abc", "a.b", &t[..t.len() - 1]] {
            assert_eq!(
                verify("s3cret", junk, 7, Utc::now()),
                Err(TokenError::Invalid),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn approver_names_with_dots_survive() {
        let t = issue("k", 1, "first.last", None);
        assert_eq!(
            verify("k", &t, 1, Utc::now()).unwrap().approver,
            "first.last"
        );
    }
}
