//! `docs/api.md` and the OpenAPI document cannot drift: every route with its statuses, every
//! error code and every reason code of the document and of the catalogue is in the reference,
//! and the reference names nothing else.

use gateway::api::openapi::DOCUMENT;
use serde_json::Value;
use std::collections::BTreeSet;

const API_MD: &str = include_str!("../../../docs/api.md");

/// (`METHOD /path`, "200, 400, …") of every row of the routes table.
fn documented_routes() -> BTreeSet<(String, String)> {
    API_MD
        .lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix("| `")?.splitn(3, '|');
            let route = cells.next()?.trim().strip_suffix('`')?;
            let statuses = cells.next()?.trim();
            let (method, path) = route.split_once(' ')?;
            (method.chars().all(|c| c.is_ascii_uppercase()) && path.starts_with('/'))
                .then(|| (route.to_owned(), statuses.to_owned()))
        })
        .collect()
}

#[test]
fn every_route_and_status_of_the_document_is_in_the_reference_and_nothing_else() {
    let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
    let mut in_doc = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let statuses: Vec<&str> = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            in_doc.insert((
                format!("{} {path}", method.to_ascii_uppercase()),
                statuses.join(", "),
            ));
        }
    }
    let in_md = documented_routes();
    let missing: Vec<_> = in_doc.difference(&in_md).collect();
    let extra: Vec<_> = in_md.difference(&in_doc).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/api.md lacks {missing:#?}\nand names, not in the OpenAPI document, {extra:#?}"
    );
}

/// The backquoted SCREAMING_SNAKE_CASE words of the reference.
fn documented_codes() -> BTreeSet<String> {
    API_MD
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| {
            w.len() > 2
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                && w.contains('_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_error_and_reason_code_is_in_the_reference_and_nothing_else() {
    let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
    let mut codes: BTreeSet<String> = doc["components"]["schemas"]["Error"]["properties"]["error"]
        ["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    codes.extend(risk_core::catalogue().map(|e| e.code.as_str().to_owned()));
    let documented = documented_codes();
    let missing: Vec<_> = codes
        .iter()
        .filter(|c| !documented.contains(*c) && !API_MD.contains(&format!("`{c}`")))
        .collect();
    let extra: Vec<_> = documented.iter().filter(|c| !codes.contains(*c)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/api.md lacks {missing:?} and names unknown codes {extra:?}"
    );
    // The families of the document are the catalogue's.
    let families: BTreeSet<String> =
        doc["components"]["schemas"]["CatalogueEntry"]["properties"]["family"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_owned())
            .collect();
    let used: BTreeSet<String> = risk_core::catalogue()
        .map(|e| {
            serde_json::to_value(e.family)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(used.is_subset(&families), "{used:?} ⊄ {families:?}");
}

#[test]
fn the_docs_link_only_inside_the_repository() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for file in [
        "README.md",
        "docs/api.md",
        "docs/architecture.md",
        "gateway/src/lib.rs",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        // The brief's folder beside the checkout, spelled in two parts so that this test is
        // not itself a link out of the repository to a search for one.
        assert!(
            !text.contains(concat!("..", "/shared")),
            "{file} points outside the repository"
        );
        // Markdown links to files: each target exists in the repository.
        let dir = std::path::Path::new(root).join(file);
        let dir = dir.parent().unwrap();
        for target in text.split("](").skip(1).filter_map(|s| s.split(')').next()) {
            if target.starts_with("http") || target.starts_with('#') {
                continue;
            }
            let path = target.split('#').next().unwrap();
            assert!(
                dir.join(path).exists(),
                "{file}: link to {target} leads nowhere"
            );
        }
    }
}
