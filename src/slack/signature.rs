//! Slack request signatures: `X-Slack-Signature: v0=HEX(HMAC-SHA256(secret, "v0:TS:BODY"))`
//! with `X-Slack-Request-Timestamp` no more than five minutes away.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How far a request's timestamp may be from now.
pub const MAX_AGE_SECS: i64 = 300;

/// Why a request is not from Slack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header is missing or malformed.
    #[error("missing or malformed {0}")]
    Header(&'static str),
    /// The timestamp is more than five minutes away from now.
    #[error("request timestamp is {0}s away from now (more than five minutes)")]
    Stale(i64),
    /// The signature does not match.
    #[error("signature does not match")]
    Mismatch,
}

/// The `v0=…` signature of `body` sent at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v0={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    mac
}

/// Checks a request's headers against `secret` at time `now` (Unix seconds), in constant time.
pub fn verify(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let ts: i64 = timestamp
        .and_then(|t| t.trim().parse().ok())
        .ok_or(SignatureError::Header("X-Slack-Request-Timestamp"))?;
    let given = signature
        .and_then(|s| s.trim().strip_prefix("v0="))
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Header("X-Slack-Signature"))?;
    let age = (now - ts).abs();
    if age > MAX_AGE_SECS {
        return Err(SignatureError::Stale(age));
    }
    mac(secret, ts, body)
        .verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slacks_documented_example_verifies() {
        // https://api.slack.com/authentication/verifying-requests-from-slack
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let ts = 1531420618;
        let expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign(secret, ts, body), expected);
        assert_eq!(
            verify(secret, Some("1531420618"), Some(expected), body, ts + 10),
            Ok(())
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        let sig = sign("s", 1000, b"body");
        assert_eq!(verify("s", Some("1000"), Some(&sig), b"body", 1000), Ok(()));
        assert_eq!(
            verify("t", Some("1000"), Some(&sig), b"body", 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("s", Some("1000"), Some(&sig), b"bodY", 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("s", Some("1000"), Some(&sig), b"body", 1000 + 301),
            Err(SignatureError::Stale(301))
        );
        assert!(matches!(
            verify("s", None, Some(&sig), b"body", 1000),
            Err(SignatureError::Header(_))
        ));
        assert!(matches!(
            verify("s", Some("1000"), None, b"body", 1000),
            Err(SignatureError::Header(_))
        ));
        assert!(matches!(
            verify("s", Some("1000"), Some("v1=00"), b"body", 1000),
            Err(SignatureError::Header(_))
        ));
    }
}
