//! Reading the few things tests need out of HTML pages and redirects, without a browser.

use reqwest::Response;
use reqwest::header::{LOCATION, SET_COOKIE};

/// Where a redirect points.
pub fn location(response: &Response) -> String {
    response.headers()[LOCATION].to_str().unwrap().to_owned()
}

/// Undoes HTML escaping in an attribute value.
pub fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#x2F;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in a tag's text.
pub fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

/// Every hidden input of a page, as (name, value).
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input")
        .skip(1)
        .filter(|tag| tag.contains("type=\"hidden\""))
        .filter_map(|tag| Some((attribute(tag, "name")?, attribute(tag, "value")?)))
        .collect()
}

/// The `action` of the page's first form.
pub fn form_action(html: &str) -> String {
    let form = html.split("<form").nth(1).unwrap();
    attribute(form, "action").unwrap()
}

/// Whether an answer opens a session.
pub fn sets_session_cookie(response: &Response) -> bool {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .any(|value| value.to_str().unwrap().starts_with("eg_session="))
}
