//! The page shell and the one stylesheet shared by every HTML page faultline makes: the
//! `report.html` and comparison files written into the store, and the pages of
//! `faultline serve`. Built with maud, so markup is checked at compile time, text is escaped
//! by default and there are no template files to ship. Everything is inline (CSS, SVG), so a
//! written file opened straight from disk looks the same as it does served.

use maud::{DOCTYPE, Markup, PreEscaped, html};

pub const CSS: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222;padding:0 1em}\
table{border-collapse:collapse;margin:.5em 0 1.2em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}\
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}\
th a{color:inherit;text-decoration:none}th a.sorted{text-decoration:underline}\
.banner{padding:.8em 1em;font-size:1.4em;font-weight:bold;border-radius:4px;color:#fff}\
.valid{background:#2e7d32}.invalid{background:#c62828}.unknown{background:#ef6c00}.running{background:#1565c0}\
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:12px}\
.legend span{display:inline-block;padding:1px 8px;margin-right:6px;border-radius:3px}\
.v-true,.v-valid{color:#2e7d32}.v-false,.v-invalid{color:#c62828;font-weight:bold}.v-unknown{color:#ef6c00}\
nav{display:flex;gap:1.2em;align-items:baseline;border-bottom:1px solid #ddd;padding-bottom:.4em;margin-bottom:1em}\
nav b{font-size:1.1em}nav a{color:#1565c0;text-decoration:none}\
form.filters{display:flex;flex-wrap:wrap;gap:.5em;align-items:end;margin:.5em 0}\
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#555}\
form.filters input,form.filters select{font-size:13px;padding:2px 4px}\
.pager{display:flex;gap:1em;align-items:baseline;font-size:13px}\
.strip rect.valid{fill:#2e7d32}.strip rect.invalid{fill:#c62828}.strip rect.unknown{fill:#ef6c00}\
.muted{color:#777;font-size:13px}";

/// A complete page: `nav` adds the web app's links, which only work when served.
pub fn page(title: &str, nav: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                @if nav {
                    nav {
                        b { "faultline" }
                        a href="/" { "Runs" }
                        a href="/-/trends" { "Trends" }
                    }
                }
                (body)
            }
        }
    }
}

/// The CSS class of a verdict word as the index stores it: `valid`, `invalid`, `unknown`.
pub fn verdict_word_class(word: &str) -> &'static str {
    match word.to_ascii_lowercase().as_str() {
        "valid" => "valid",
        "invalid" => "invalid",
        _ => "unknown",
    }
}
