//! Authentication: API keys and the admin token, compared in constant time.

use super::error::{ApiError, ErrorCode};
use crate::request::Caller;
use axum::http::HeaderMap;
use std::fmt;
use subtle::ConstantTimeEq;

/// API keys and the admin token, compared in constant time.
pub struct Auth {
    /// (hash of key, caller).
    callers: Vec<([u8; 32], Caller)>,
    admin: [u8; 32],
    hash_key: [u8; 32],
    /// Keys the user tags of logs; derived from the admin token, so tags are stable across
    /// the instances of one deployment and cannot be reversed without the token.
    user_tag_key: [u8; 32],
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("callers", &self.callers.len())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// From the configured keys and token.
    pub fn new(api_keys: &[String], admin_token: &str) -> Self {
        // Hashing both sides to 32 bytes makes the comparison constant-time in the key's
        // length too. The hash key only needs to be fixed per process.
        let hash_key = *blake3::hash(b"loan-gateway api key v1").as_bytes();
        let h = |k: &str| *blake3::keyed_hash(&hash_key, k.as_bytes()).as_bytes();
        let callers = api_keys
            .iter()
            .map(|k| {
                let digest = h(k);
                let id = format!("caller-{}", &blake3::Hash::from(digest).to_hex()[..12]);
                (digest, Caller { id: id.into() })
            })
            .collect();
        Auth {
            callers,
            admin: h(admin_token),
            hash_key,
            user_tag_key: blake3::derive_key("loan-gateway user tag v1", admin_token.as_bytes()),
        }
    }

    fn bearer(headers: &HeaderMap) -> Option<&str> {
        let v = headers
            .get(axum::http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let (scheme, token) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    }

    fn digest(&self, token: &str) -> [u8; 32] {
        *blake3::keyed_hash(&self.hash_key, token.as_bytes()).as_bytes()
    }

    /// A user id as it may appear in logs: 16 hex digits of a keyed hash, never the id.
    pub fn user_tag(&self, user: &str) -> String {
        blake3::keyed_hash(&self.user_tag_key, user.as_bytes()).to_hex()[..16].to_owned()
    }

    /// The caller a request authenticates as.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let token =
            Self::bearer(headers).ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated))?;
        let d = self.digest(token);
        let mut found = None;
        // Compare against every key so timing does not reveal which one matched.
        for (k, caller) in &self.callers {
            if bool::from(k.ct_eq(&d)) {
                found = Some(caller.clone());
            }
        }
        found.ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated))
    }

    /// Checks the admin token; a caller key on an admin route is 403.
    pub fn admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let token =
            Self::bearer(headers).ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated))?;
        if bool::from(self.admin.ct_eq(&self.digest(token))) {
            return Ok(());
        }
        if self.caller(headers).is_ok() {
            return Err(ApiError::new(ErrorCode::Forbidden));
        }
        Err(ApiError::new(ErrorCode::Unauthenticated))
    }

    /// The operator a console sign-in with `token` is: the admin token signs in (as the
    /// operator `admin`); a caller key is refused (403 `FORBIDDEN`), anything else is 401.
    /// The one place the console checks a token, so named admin tokens map to their
    /// operator here.
    pub fn console_operator(&self, token: &str) -> Result<std::sync::Arc<str>, ApiError> {
        let d = self.digest(token.trim());
        if bool::from(self.admin.ct_eq(&d)) {
            return Ok("admin".into());
        }
        let mut caller = false;
        for (k, _) in &self.callers {
            caller |= bool::from(k.ct_eq(&d));
        }
        Err(ApiError::new(if caller {
            ErrorCode::Forbidden
        } else {
            ErrorCode::Unauthenticated
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn callers_and_admin_are_told_apart() {
        let auth = Auth::new(
            &["key-aaaaaaaaaaaaaaaa".into(), "key-bbbbbbbbbbbbbbbb".into()],
            "admin-cccccccccccccc",
        );
        let a = auth.caller(&headers("key-aaaaaaaaaaaaaaaa")).unwrap();
        let b = auth.caller(&headers("key-bbbbbbbbbbbbbbbb")).unwrap();
        assert_ne!(a.id, b.id);
        assert!(
            !a.id.contains("aaaa"),
            "the caller id does not reveal the key"
        );
        assert!(auth.caller(&headers("key-zzzzzzzzzzzzzzzz")).is_err());
        assert!(auth.caller(&HeaderMap::new()).is_err());
        assert!(auth.admin(&headers("admin-cccccccccccccc")).is_ok());
        assert_eq!(
            auth.admin(&headers("key-aaaaaaaaaaaaaaaa"))
                .unwrap_err()
                .code(),
            ErrorCode::Forbidden
        );
        assert_eq!(
            auth.admin(&headers("nope-nope-nope-nope"))
                .unwrap_err()
                .code(),
            ErrorCode::Unauthenticated
        );
    }

    #[test]
    fn only_the_admin_token_signs_in_to_the_console() {
        let auth = Auth::new(&["key-aaaaaaaaaaaaaaaa".into()], "admin-cccccccccccccc");
        assert_eq!(
            auth.console_operator("admin-cccccccccccccc")
                .unwrap()
                .as_ref(),
            "admin"
        );
        let refused = |t: &str| auth.console_operator(t).unwrap_err().code();
        assert_eq!(refused("key-aaaaaaaaaaaaaaaa"), ErrorCode::Forbidden);
        assert_eq!(refused("nope-nope-nope-nope"), ErrorCode::Unauthenticated);
        assert_eq!(refused(""), ErrorCode::Unauthenticated);
    }

    #[test]
    fn user_tags_hide_the_id_and_are_stable_per_deployment() {
        let auth = Auth::new(&[], "admin-cccccccccccccc");
        let tag = auth.user_tag("u-000123");
        assert_eq!(tag.len(), 16);
        assert!(!tag.contains("000123"));
        assert_eq!(
            tag,
            Auth::new(&[], "admin-cccccccccccccc").user_tag("u-000123")
        );
        assert_ne!(
            tag,
            Auth::new(&[], "admin-dddddddddddddd").user_tag("u-000123")
        );
    }
}
