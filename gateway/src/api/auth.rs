//! Authentication: API keys and the admin tokens, compared in constant time.
//!
//! Admin tokens are named: each belongs to an operator ([`crate::config::AdminConfig`],
//! `[[admin.tokens]]`),
//! and the admin routes know who is calling ([`Operator`]), which the audit trail of operator
//! changes records. The single `admin_token` of earlier configurations still works, as the
//! operator [`LEGACY_OPERATOR`].

use super::error::{ApiError, ErrorCode};
use crate::config::{AdminToken, LEGACY_OPERATOR};
use crate::request::Caller;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use std::fmt;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The operator an admin request signs in as: inserted by the edge into the request's
/// extensions, read by the admin handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator(pub Arc<str>);

impl Operator {
    /// The operator id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // The edge authenticates every admin route before its handler runs; an admin handler
        // without an operator is served outside the edge, a bug.
        parts
            .extensions
            .get::<Operator>()
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::Internal))
    }
}

/// API keys and the admin tokens, compared in constant time.
pub struct Auth {
    /// (hash of key, caller).
    callers: Vec<([u8; 32], Caller)>,
    /// (hash of token, operator).
    admins: Vec<([u8; 32], Operator)>,
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
    /// From the configured keys and the one admin token (operator [`LEGACY_OPERATOR`]).
    pub fn new(api_keys: &[String], admin_token: &str) -> Self {
        Auth::with_operators(api_keys, admin_token, &[])
    }

    /// From the configured keys, the legacy admin token (none when empty) and the named
    /// admin tokens. The user tags' key is derived from the legacy token, else from the
    /// first named one.
    pub fn with_operators(api_keys: &[String], admin_token: &str, named: &[AdminToken]) -> Self {
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
        let legacy = (!admin_token.is_empty()).then_some((admin_token, LEGACY_OPERATOR));
        let admins = legacy
            .into_iter()
            .chain(
                named
                    .iter()
                    .map(|t| (t.token.as_str(), t.operator.as_str())),
            )
            .map(|(token, op)| (h(token), Operator(op.into())))
            .collect();
        let tag_secret = if admin_token.is_empty() {
            named.first().map_or("", |t| t.token.as_str())
        } else {
            admin_token
        };
        Auth {
            callers,
            admins,
            hash_key,
            user_tag_key: blake3::derive_key("loan-gateway user tag v1", tag_secret.as_bytes()),
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

    /// The operator whose admin token the request carries; a caller key on an admin route
    /// is 403.
    pub fn admin(&self, headers: &HeaderMap) -> Result<Operator, ApiError> {
        let token =
            Self::bearer(headers).ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated))?;
        self.operator(token)
    }

    /// The operator `token` signs in as (a named admin token's operator, or `admin` for
    /// the admin token); a caller key is refused (403 `FORBIDDEN`), anything else is 401.
    /// The one check behind the admin routes and the console's sign-in.
    pub fn operator(&self, token: &str) -> Result<Operator, ApiError> {
        let d = self.digest(token);
        let mut found = None;
        // Compare against every token and key so timing does not reveal which one matched.
        for (k, op) in &self.admins {
            if bool::from(k.ct_eq(&d)) {
                found = Some(op.clone());
            }
        }
        let mut caller = false;
        for (k, _) in &self.callers {
            caller |= bool::from(k.ct_eq(&d));
        }
        found.ok_or_else(|| {
            ApiError::new(if caller {
                ErrorCode::Forbidden
            } else {
                ErrorCode::Unauthenticated
            })
        })
    }

    /// The operator a console sign-in with `token` is, as [`Auth::operator`] says.
    pub fn console_operator(&self, token: &str) -> Result<Arc<str>, ApiError> {
        self.operator(token.trim()).map(|o| o.0)
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
    fn named_tokens_sign_in_as_their_operator() {
        let named = [
            AdminToken {
                operator: "alice".into(),
                token: "alice-token-aaaaaaaaaa".into(),
            },
            AdminToken {
                operator: "bob".into(),
                token: "bob-token-bbbbbbbbbbbb".into(),
            },
        ];
        let auth = Auth::with_operators(
            &["key-aaaaaaaaaaaaaaaa".into()],
            "admin-cccccccccccccc",
            &named,
        );
        let op = |t: &str| auth.admin(&headers(t)).map(|o| o.as_str().to_owned());
        assert_eq!(op("alice-token-aaaaaaaaaa").unwrap(), "alice");
        assert_eq!(op("bob-token-bbbbbbbbbbbb").unwrap(), "bob");
        assert_eq!(op("admin-cccccccccccccc").unwrap(), LEGACY_OPERATOR);
        assert_eq!(
            op("key-aaaaaaaaaaaaaaaa").unwrap_err().code(),
            ErrorCode::Forbidden
        );
        // Without the legacy token, only the named ones sign in.
        let auth = Auth::with_operators(&[], "", &named);
        assert!(auth.admin(&headers("alice-token-aaaaaaaaaa")).is_ok());
        assert_eq!(
            auth.admin(&headers("admin-cccccccccccccc"))
                .unwrap_err()
                .code(),
            ErrorCode::Unauthenticated
        );
    }

    #[test]
    fn admin_tokens_sign_in_to_the_console_as_their_operator() {
        let named = [AdminToken {
            operator: "alice".into(),
            token: "alice-token-aaaaaaaaaa".into(),
        }];
        let auth = Auth::with_operators(
            &["key-aaaaaaaaaaaaaaaa".into()],
            "admin-cccccccccccccc",
            &named,
        );
        let signed_in = |t: &str| auth.console_operator(t).unwrap().to_string();
        assert_eq!(signed_in("admin-cccccccccccccc"), LEGACY_OPERATOR);
        assert_eq!(signed_in(" alice-token-aaaaaaaaaa "), "alice");
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
