//! JSON answers: serialised into a buffer sized for the common answers, with the headers
//! axum's `Json` sets.

use crate::store::DecisionRecord;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The capacity a JSON answer is serialised into: an approval and every error body fit, so
/// the common answers never grow the buffer; a refusal with reasons grows it once. (axum's
/// `Json` starts smaller, and grows for an approval.)
pub const JSON_CAPACITY: usize = 512;

/// Serialises `value` as JSON into a buffer of [`JSON_CAPACITY`].
pub fn json_bytes<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    json_written(|buf| serde_json::to_writer(buf, value))
}

/// What `write` writes into a buffer of [`JSON_CAPACITY`].
fn json_written(
    write: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
) -> serde_json::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(JSON_CAPACITY);
    write(&mut buf)?;
    Ok(buf)
}

/// `value` as a JSON answer, exactly as axum's `Json` answers it (status 200,
/// `content-type: application/json`; a value that does not serialise is a 500 with the
/// error as `text/plain; charset=utf-8`), serialised by [`json_bytes`].
pub fn json_response<T: Serialize + ?Sized>(value: &T) -> Response {
    json_answer(json_bytes(value))
}

/// A decision as a JSON answer: the same as [`json_response`] (the same bytes), written by
/// [`DecisionRecord::write_json`], which skips escaping the field names.
pub fn decision_response(record: &DecisionRecord) -> Response {
    json_answer(json_written(|buf| record.write_json(buf)))
}

fn json_answer(json: serde_json::Result<Vec<u8>>) -> Response {
    match json {
        Ok(buf) => {
            // By hand: `(headers, Vec<u8>)` first sets `application/octet-stream`, then
            // replaces it. The response is the same: one header, status 200.
            let mut res = Response::new(axum::body::Body::from(buf));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res
        }
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            err.to_string(),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AppealRecord;

    /// Status, headers and body of an answer.
    async fn parts(res: Response) -> (StatusCode, axum::http::HeaderMap, bytes::Bytes) {
        use http_body_util::BodyExt;
        let (parts, body) = res.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    }

    /// A map with a non-string key: serde_json refuses it.
    struct Unserialisable;

    impl Serialize for Unserialisable {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry(&[1u8, 2], &0u8)?;
            m.end()
        }
    }

    #[tokio::test]
    async fn json_answers_are_axum_json_answers_byte_for_byte() {
        let long = serde_json::json!({
            "appeals": (0..20)
                .map(|i| AppealRecord {
                    appeal_id: format!("ap_{i:026}"),
                    decision_id: format!("dd_{i:026}"),
                    user_id: "u-1".into(),
                    message: "额度不对 \"quoted\" \n".repeat(10),
                    status: crate::store::AppealStatus::Open,
                    created_at: "2026-11-11T00:00:03+08:00".into(),
                    due_at: "2026-11-26T00:00:03+08:00".into(),
                    resolved_at: None,
                    resolution_note: None,
                })
                .collect::<Vec<_>>(),
        });
        assert!(serde_json::to_vec(&long).unwrap().len() > JSON_CAPACITY);
        for value in [serde_json::json!({"ready": true}), long] {
            let ours = parts(json_response(&value)).await;
            let axum = parts(axum::Json(&value).into_response()).await;
            assert_eq!(ours, axum);
            assert_eq!(ours.2, serde_json::to_vec(&value).unwrap());
        }
        let decision = DecisionRecord {
            decision_id: "dd_01JD0000000000000000000000".into(),
            user_id: "u-1".into(),
            outcome: risk_core::Outcome::Approved,
            amount_fen: 100,
            reasons: vec![],
            available_fen: 900,
            drawable_now_fen: 900,
            threshold_version: 3,
            policy: "standard".into(),
            evaluated_at: "2026-11-11T00:00:03+08:00".into(),
            appealable: false,
        };
        assert_eq!(
            parts(decision_response(&decision)).await,
            parts(axum::Json(&decision).into_response()).await
        );
        let ours = parts(json_response(&Unserialisable)).await;
        assert_eq!(ours.0, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            ours,
            parts(axum::Json(Unserialisable).into_response()).await
        );
    }
}
