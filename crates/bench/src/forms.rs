//! Just enough HTML to fill in a login or consent form: each `<form>`'s method and action, its
//! inputs (name, type, value) and its named buttons. Attribute values are entity-decoded.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub method: String,
    pub action: String,
    pub inputs: Vec<Input>,
    /// Named submit buttons, as `(name, value)`.
    pub buttons: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub name: String,
    pub kind: String,
    pub value: String,
}

impl Form {
    pub fn has_password(&self) -> bool {
        self.inputs.iter().any(|i| i.kind == "password")
    }

    /// Hidden inputs: the values a browser sends back untouched (request ids, CSRF tokens).
    pub fn hidden(&self) -> impl Iterator<Item = (&str, &str)> {
        self.inputs.iter().filter(|i| i.kind == "hidden").map(|i| (i.name.as_str(), i.value.as_str()))
    }

    pub fn password_field(&self) -> Option<&str> {
        self.inputs.iter().find(|i| i.kind == "password").map(|i| i.name.as_str())
    }
}

/// Every form in `html`, in document order.
pub fn forms(html: &str) -> Vec<Form> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(start) = lower[at..].find("<form").map(|i| i + at) {
        let end = lower[start..].find("</form").map_or(html.len(), |i| i + start);
        let (tag, inner_start) = tag_at(html, start);
        let attrs = attributes(tag);
        let mut form = Form {
            method: attr(&attrs, "method").unwrap_or("get").to_ascii_lowercase(),
            action: attr(&attrs, "action").unwrap_or("").to_owned(),
            inputs: Vec::new(),
            buttons: Vec::new(),
        };
        let body = &html[inner_start.min(end)..end];
        let body_lower = &lower[inner_start.min(end)..end];
        for (i, _) in body_lower.match_indices('<') {
            let rest = &body_lower[i + 1..];
            let is_input = rest.starts_with("input");
            let is_button = rest.starts_with("button");
            if !is_input && !is_button {
                continue;
            }
            let (tag, _) = tag_at(body, i);
            let a = attributes(tag);
            let Some(name) = attr(&a, "name") else { continue };
            let value = attr(&a, "value").unwrap_or("").to_owned();
            if is_input {
                let kind = attr(&a, "type").unwrap_or("text").to_ascii_lowercase();
                form.inputs.push(Input { name: name.to_owned(), kind, value });
            } else {
                form.buttons.push((name.to_owned(), value));
            }
        }
        out.push(form);
        at = end.max(start + 5);
    }
    out
}

/// The tag starting at `start` (up to its `>`) and the index just after it.
fn tag_at(html: &str, start: usize) -> (&str, usize) {
    let mut quote = None;
    for (i, c) in html[start..].char_indices() {
        match (quote, c) {
            (None, '"') | (None, '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return (&html[start..start + i], start + i + 1),
            _ => {}
        }
    }
    (&html[start..], html.len())
}

/// `(name, decoded value)` pairs of a tag's attributes; a bare attribute has an empty value.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // Skip the element name.
    let mut rest = tag.trim_start_matches('<');
    rest = rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        if rest.is_empty() {
            break;
        }
        let name_end = rest.find(|c: char| c.is_whitespace() || c == '=' || c == '/').unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let mut value = String::new();
        if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            let (raw, remaining) = match after.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let close = after[1..].find(q).map_or(after.len(), |i| i + 1);
                    (&after[1..close], after.get(close + 1..).unwrap_or(""))
                }
                _ => {
                    let end = after.find(char::is_whitespace).unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            value = html_escape::decode_html_entities(raw).into_owned();
            rest = remaining;
        }
        if name.is_empty() {
            // Not an attribute: skip one character so that the loop always advances.
            rest = rest.get(1..).unwrap_or("");
            continue;
        }
        out.push((name, value));
    }
    out
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latchkey_login_and_consent_forms() {
        let login = r#"<form method="post" action="/login">
<input type="hidden" name="req" value="r&amp;1">
<input type="hidden" name="csrf" value="c1">
<input type="text" id="username" name="username" value="" autocomplete="username" required autofocus>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>"#;
        let f = &forms(login)[0];
        assert_eq!((f.method.as_str(), f.action.as_str()), ("post", "/login"));
        assert_eq!(f.hidden().collect::<Vec<_>>(), vec![("req", "r&1"), ("csrf", "c1")]);
        assert_eq!(f.password_field(), Some("password"));
        let consent = r#"<FORM method="post" action="/consent"><input type="hidden" name="req" value="r">
<button type="submit" name="decision" value="allow" autofocus>Allow</button>
<button type="submit" name="decision" value="deny" class="secondary">Deny</button></FORM>"#;
        let f = &forms(consent)[0];
        assert!(!f.has_password());
        assert_eq!(f.buttons, vec![("decision".into(), "allow".into()), ("decision".into(), "deny".into())]);
    }

    #[test]
    fn node_oidc_provider_forms() {
        let page = r#"<form autocomplete="off" action="/interaction/abc/login" method="post">
<input required type="text" name="login" placeholder="Username" autofocus>
<input required type=password name=password placeholder="Password">
<button type="submit">Sign-in</button></form>"#;
        let f = &forms(page)[0];
        assert_eq!(f.action, "/interaction/abc/login");
        assert_eq!(f.password_field(), Some("password"));
        assert!(f.buttons.is_empty());
        assert_eq!(forms("<p>no form</p>"), vec![]);
    }
}
