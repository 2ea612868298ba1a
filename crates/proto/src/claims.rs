//! The `claims` request parameter (OpenID Connect Core §5.5): individual claims an RP asks for,
//! in the ID token or at the UserInfo endpoint, each voluntary or essential, optionally with the
//! value(s) it wants (`acr` is the one whose values the server acts on).
//!
//! Parsed at the edge into a bounded, validated [`ClaimsRequest`]; anything malformed is an
//! `invalid_request` that names the fault. Claim names the server does not know are kept (they
//! cost nothing, bounded) and ignored when claims are released (Core §5.5: "not understood").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::OAuthError;

/// Longest `claims` parameter accepted, in bytes: far above any real request (the Core §5.5
/// example is 400 bytes), and it is stored with the pending request, the code and the grant.
pub const MAX_CLAIMS_BYTES: usize = 4096;
/// Most claims in one member (`userinfo` or `id_token`).
pub const MAX_CLAIMS_PER_MEMBER: usize = 32;
/// Longest claim name.
pub const MAX_CLAIM_NAME: usize = 64;
/// Most entries in `values`.
pub const MAX_VALUES: usize = 16;
/// Longest string in `value` / `values`.
pub const MAX_VALUE_LEN: usize = 256;

/// What the RP asks of one claim: `null` in the request is the default (voluntary, any value).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// Core §5.5.1: needed for the RP's use case (the OP still releases only what it has).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub essential: bool,
    /// The one value asked for (a JSON string, number or boolean).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The values asked for, in order of preference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Value>,
}

/// The `claims` parameter, validated. Its two members map claim names to what is asked of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimsRequest {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub userinfo: BTreeMap<String, ClaimRequest>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub id_token: BTreeMap<String, ClaimRequest>,
}

/// What the `claims` parameter asks of `acr` in the ID token (Core §5.5.1.1): the values the RP
/// accepts, in order of preference, and whether it must get one of them. Another part of the
/// server enforces it, together with `acr_values`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcrClaim {
    pub essential: bool,
    pub values: Vec<String>,
}

impl ClaimsRequest {
    /// Parses the `claims` parameter's value (Core §5.5): a JSON object whose `userinfo` and
    /// `id_token` members, if present, are objects of claim name to `null` or
    /// `{"essential": bool, "value": v, "values": [v…]}`. Other top-level members are ignored.
    pub fn parse(raw: &str) -> Result<Self, OAuthError> {
        if raw.len() > MAX_CLAIMS_BYTES {
            return Err(invalid(format!("is longer than {MAX_CLAIMS_BYTES} bytes")));
        }
        let v: Value = serde_json::from_str(raw)
            .map_err(|e| invalid(format!("is not valid JSON ({e}) (OpenID Connect Core §5.5)")))?;
        let Value::Object(top) = v else {
            return Err(invalid("must be a JSON object with userinfo and/or id_token members".into()));
        };
        let mut out = Self::default();
        for (member, target) in [("userinfo", &mut out.userinfo), ("id_token", &mut out.id_token)] {
            match top.get(member) {
                None | Some(Value::Null) => {}
                Some(Value::Object(claims)) => *target = parse_member(member, claims)?,
                Some(_) => return Err(invalid(format!("member {member} must be a JSON object of claim names"))),
            }
        }
        Ok(out)
    }

    /// Nothing is asked.
    pub fn is_empty(&self) -> bool {
        self.userinfo.is_empty() && self.id_token.is_empty()
    }

    /// The `acr` request of the ID token member, if any (Core §5.5.1.1).
    pub fn acr(&self) -> Option<AcrClaim> {
        let r = self.id_token.get("acr")?;
        let values = r.value.iter().chain(r.values.iter()).filter_map(|v| v.as_str().map(str::to_owned)).collect();
        Some(AcrClaim { essential: r.essential, values })
    }

    /// The subject the RP asks for with `"sub": {"value": …}` (Core §5.5.1): the server must not
    /// answer for any other user.
    pub fn subject(&self) -> Option<&str> {
        [&self.id_token, &self.userinfo].into_iter().find_map(|m| m.get("sub")?.value.as_ref()?.as_str())
    }

    /// Every claim name asked for, in either member.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.userinfo.keys().chain(self.id_token.keys()).map(String::as_str)
    }
}

fn invalid(what: String) -> OAuthError {
    OAuthError::invalid_request(format!("the claims parameter {what}"))
}

fn parse_member(
    member: &str,
    claims: &serde_json::Map<String, Value>,
) -> Result<BTreeMap<String, ClaimRequest>, OAuthError> {
    if claims.len() > MAX_CLAIMS_PER_MEMBER {
        return Err(invalid(format!("asks for more than {MAX_CLAIMS_PER_MEMBER} claims in {member}")));
    }
    let mut out = BTreeMap::new();
    for (name, spec) in claims {
        if name.is_empty() || name.len() > MAX_CLAIM_NAME || name.chars().any(char::is_control) {
            return Err(invalid(format!(
                "has a claim name in {member} that is empty, control or longer than {MAX_CLAIM_NAME} bytes"
            )));
        }
        let at = || format!("{member}.{name}");
        let req = match spec {
            Value::Null => ClaimRequest::default(),
            Value::Object(o) => {
                let essential = match o.get("essential") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(invalid(format!("{}: essential must be true or false", at()))),
                };
                let value = match o.get("value") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(scalar(v).map_err(|e| invalid(format!("{}: value {e}", at())))?),
                };
                let values = match o.get("values") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(vs)) if vs.len() <= MAX_VALUES => vs
                        .iter()
                        .map(|v| scalar(v).map_err(|e| invalid(format!("{}: values {e}", at()))))
                        .collect::<Result<_, _>>()?,
                    Some(Value::Array(_)) => {
                        return Err(invalid(format!("{}: values has more than {MAX_VALUES} entries", at())));
                    }
                    Some(_) => return Err(invalid(format!("{}: values must be a JSON array", at()))),
                };
                ClaimRequest { essential, value, values }
            }
            _ => return Err(invalid(format!("{}: must be null or a JSON object", at()))),
        };
        out.insert(name.clone(), req);
    }
    Ok(out)
}

/// A requested value: a string (bounded), a number or a boolean.
fn scalar(v: &Value) -> Result<Value, String> {
    match v {
        Value::String(s) if s.len() <= MAX_VALUE_LEN => Ok(v.clone()),
        Value::String(_) => Err(format!("is longer than {MAX_VALUE_LEN} bytes")),
        Value::Number(_) | Value::Bool(_) => Ok(v.clone()),
        _ => Err("must be a string, a number or a boolean".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of OpenID Connect Core §5.5.
    const CORE_EXAMPLE: &str = r#"{
   "userinfo":
    {
     "given_name": {"essential": true},
     "nickname": null,
     "email": {"essential": true},
     "email_verified": {"essential": true},
     "picture": null,
     "http://example.info/claims/groups": null
    },
   "id_token":
    {
     "auth_time": {"essential": true},
     "acr": {"values": ["urn:mace:incommon:iap:silver"] }
    }
  }"#;

    #[test]
    fn the_core_example_parses() {
        let c = ClaimsRequest::parse(CORE_EXAMPLE).unwrap();
        assert!(c.userinfo["given_name"].essential);
        assert_eq!(c.userinfo["nickname"], ClaimRequest::default());
        assert_eq!(c.userinfo.len(), 6, "names it does not know are kept, to be ignored at release");
        assert!(c.id_token["auth_time"].essential);
        assert_eq!(c.acr(), Some(AcrClaim { essential: false, values: vec!["urn:mace:incommon:iap:silver".into()] }));
        assert_eq!(c.subject(), None);
        // What is stored round-trips.
        let stored = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<ClaimsRequest>(&stored).unwrap(), c);
    }

    #[test]
    fn acr_value_and_sub_value() {
        let c = ClaimsRequest::parse(r#"{"id_token":{"acr":{"essential":true,"value":"mfa"},"sub":{"value":"u1"}}}"#)
            .unwrap();
        assert_eq!(c.acr(), Some(AcrClaim { essential: true, values: vec!["mfa".into()] }));
        assert_eq!(c.subject(), Some("u1"));
        assert_eq!(ClaimsRequest::parse(r#"{"userinfo":{"name":null}}"#).unwrap().acr(), None);
    }

    #[test]
    fn faults_are_named() {
        for (raw, says) in [
            ("{", "is not valid JSON"),
            ("[]", "must be a JSON object"),
            (r#"{"userinfo":[]}"#, "member userinfo must be a JSON object"),
            (r#"{"id_token":{"acr":true}}"#, "id_token.acr: must be null or a JSON object"),
            (r#"{"id_token":{"acr":{"essential":"yes"}}}"#, "id_token.acr: essential must be true or false"),
            (r#"{"id_token":{"acr":{"values":"x"}}}"#, "id_token.acr: values must be a JSON array"),
            (r#"{"id_token":{"acr":{"value":{"a":1}}}}"#, "id_token.acr: value must be a string"),
        ] {
            let e = ClaimsRequest::parse(raw).unwrap_err();
            assert_eq!(e.code, crate::ErrorCode::InvalidRequest);
            assert!(e.description.contains(says), "{raw}: {}", e.description);
            assert!(e.description.starts_with("the claims parameter"), "{}", e.description);
        }
    }

    #[test]
    fn sizes_are_bounded() {
        let long = format!(r#"{{"userinfo":{{"name":{{"value":"{}"}}}}}}"#, "x".repeat(MAX_VALUE_LEN + 1));
        assert!(ClaimsRequest::parse(&long).unwrap_err().description.contains("longer than"));
        let many: Vec<String> = (0..=MAX_CLAIMS_PER_MEMBER).map(|i| format!(r#""c{i}":null"#)).collect();
        let many = format!(r#"{{"userinfo":{{{}}}}}"#, many.join(","));
        assert!(ClaimsRequest::parse(&many).unwrap_err().description.contains("more than"));
        let huge = format!(r#"{{"x":"{}"}}"#, "y".repeat(MAX_CLAIMS_BYTES));
        assert!(ClaimsRequest::parse(&huge).unwrap_err().description.contains("longer than"));
        let values: Vec<String> = (0..=MAX_VALUES).map(|i| format!(r#""v{i}""#)).collect();
        let values = format!(r#"{{"id_token":{{"acr":{{"values":[{}]}}}}}}"#, values.join(","));
        assert!(ClaimsRequest::parse(&values).unwrap_err().description.contains("entries"));
    }
}
