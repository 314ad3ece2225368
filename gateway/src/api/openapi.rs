//! The OpenAPI 3.1 document of the API, kept beside the code (`gateway/openapi.json`) and
//! checked against the router by `tests/api/openapi.rs`: every route and every status the
//! server answers must be documented.

/// The document, served as is at `GET /openapi.json`.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_openapi_3_1_json() {
        let v: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
        assert!(v["paths"]["/v1/drawdowns"]["post"]["responses"]["200"].is_object());
    }
}
