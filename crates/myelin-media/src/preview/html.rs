//! OpenGraph from HTML: `og:*` meta properties, with `<title>` and the meta description as
//! fallbacks for a page without them.

use serde_json::{Map, Value};

/// The `og:` properties of a page, plus fallbacks. `og:image` is left as found (maybe relative).
pub fn open_graph(html: &str) -> Map<String, Value> {
    let mut og = Map::new();
    let Ok(dom) = tl::parse(html, tl::ParserOptions::default()) else { return og };
    let parser = dom.parser();
    let mut description = None;
    if let Some(metas) = dom.query_selector("meta") {
        for handle in metas {
            let Some(tag) = handle.get(parser).and_then(|n| n.as_tag()) else { continue };
            let attr = |name: &str| tag.attributes().get(name).flatten().map(|v| decode(&v.as_utf8_str()));
            let Some(content) = attr("content") else { continue };
            match attr("property").or_else(|| attr("name")) {
                Some(key) if key.starts_with("og:") && !og.contains_key(&key) => {
                    og.insert(key, Value::String(content));
                }
                Some(key) if key.eq_ignore_ascii_case("description") => description = Some(content),
                _ => {}
            }
        }
    }
    if !og.contains_key("og:title")
        && let Some(title) = dom.query_selector("title").and_then(|mut q| q.next()).and_then(|h| h.get(parser))
    {
        let text = decode(title.inner_text(parser).trim());
        if !text.is_empty() {
            og.insert("og:title".into(), Value::String(text));
        }
    }
    if !og.contains_key("og:description")
        && let Some(description) = description
    {
        og.insert("og:description".into(), Value::String(description));
    }
    og
}

/// The few character references pages use in titles and descriptions.
fn decode(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let Some(end) = rest.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" | "#39" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_open_graph_and_fallbacks() {
        let og = open_graph(
            r#"<html><head><title>Fallback</title>
            <meta property="og:title" content="Tom &amp; Jerry">
            <meta property="og:image" content="/cat.png"><meta property="og:image:width" content="640">
            <meta name="description" content="A description &#x2014; with entities">
            </head></html>"#,
        );
        assert_eq!(og["og:title"], "Tom & Jerry");
        assert_eq!(og["og:image"], "/cat.png");
        assert_eq!(og["og:image:width"], "640");
        assert_eq!(og["og:description"], "A description \u{2014} with entities");
        let og = open_graph("<title> Just a title </title>");
        assert_eq!(og["og:title"], "Just a title");
        assert!(open_graph("not html at all <<<").get("og:title").is_none());
    }
}
