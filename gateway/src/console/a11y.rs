//! Accessibility checks that need no browser: every text colour pair of the stylesheet
//! meets WCAG 2.1 AA contrast (4.5:1 for body text). The browser tests check the rendered
//! pages (labels, headings, language, no horizontal scrolling).

use super::assets::CONSOLE_CSS;

/// The value of custom property `--name` in the stylesheet's `:root`, as RGB.
fn colour(name: &str) -> [u8; 3] {
    let needle = format!("--{name}:");
    let at = CONSOLE_CSS
        .find(&needle)
        .unwrap_or_else(|| panic!("--{name} is defined"));
    let hex = CONSOLE_CSS[at + needle.len()..]
        .trim_start()
        .trim_start_matches('#');
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).expect("#rrggbb");
    [byte(0), byte(2), byte(4)]
}

/// WCAG relative luminance.
fn luminance([r, g, b]: [u8; 3]) -> f64 {
    let lin = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
}

fn contrast(a: [u8; 3], b: [u8; 3]) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    let (hi, lo) = if la > lb { (la, lb) } else { (lb, la) };
    (hi + 0.05) / (lo + 0.05)
}

#[test]
fn every_text_colour_pair_meets_wcag_aa() {
    // (text, background) as the stylesheet uses them.
    let pairs = [
        ("ink", "paper"),
        ("ink", "panel"),
        ("muted", "paper"),
        ("muted", "panel"),
        ("link", "paper"),
        ("link", "panel"),
        ("button-ink", "button"),
        ("danger", "danger-bg"),
        ("ink", "danger-bg"),
        ("link", "danger-bg"),
        ("ok", "ok-bg"),
        ("ink", "ok-bg"),
        ("link", "ok-bg"),
        ("warn", "warn-bg"),
    ];
    for (fg, bg) in pairs {
        let ratio = contrast(colour(fg), colour(bg));
        assert!(
            ratio >= 4.5,
            "--{fg} on --{bg}: {ratio:.2}:1 is below 4.5:1"
        );
    }
    // The focus ring against the page (WCAG 1.4.11, non-text: 3:1).
    assert!(contrast(colour("focus"), colour("paper")) >= 3.0);
}

#[test]
fn the_contrast_formula_matches_known_values() {
    assert!((contrast([0, 0, 0], [255, 255, 255]) - 21.0).abs() < 1e-9);
    assert!((contrast([119, 119, 119], [255, 255, 255]) - 4.48).abs() < 0.01);
}
