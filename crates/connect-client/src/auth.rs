//! The Connect API key: the one secret every request carries.
//!
//! Connect expects `Authorization: ApiKey SU-...:secret`. Users paste keys with or without the
//! `ApiKey ` prefix, so both are accepted. The key is never shown: `Debug` and `Display` print a
//! redacted form, and the header value is marked sensitive so HTTP-level logging skips it.

use std::fmt;

use reqwest::header::HeaderValue;

/// A Connect API key. Cheap to clone; prints as `ApiKey(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The token without the `ApiKey ` prefix.
    token: String,
}

/// Why a string is not a usable API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("the API key is empty")]
    Empty,
    #[error("the API key contains characters not allowed in an HTTP header")]
    NotHeaderSafe,
}

impl ApiKey {
    /// Accepts `ApiKey SU-xxx:secret` or the bare `SU-xxx:secret` (surrounding whitespace is
    /// ignored, the prefix is matched case-insensitively).
    pub fn new(raw: impl AsRef<str>) -> Result<ApiKey, ApiKeyError> {
        let raw = raw.as_ref().trim();
        let token = match raw.get(..6) {
            Some(prefix)
                if prefix.eq_ignore_ascii_case("apikey")
                    && raw[6..].chars().next().is_none_or(char::is_whitespace) =>
            {
                raw[6..].trim_start()
            }
            _ => raw,
        };
        if token.is_empty() {
            return Err(ApiKeyError::Empty);
        }
        if token.chars().any(|c| c.is_control() || !c.is_ascii()) {
            return Err(ApiKeyError::NotHeaderSafe);
        }
        Ok(ApiKey {
            token: token.to_owned(),
        })
    }

    /// The value of the `Authorization` header, marked sensitive.
    pub fn header_value(&self) -> HeaderValue {
        match HeaderValue::from_str(&format!("ApiKey {}", self.token)) {
            Ok(mut v) => {
                v.set_sensitive(true);
                v
            }
            // `new` only admits printable ASCII, which is always a valid header value.
            Err(_) => HeaderValue::from_static(""),
        }
    }

    /// The token without the prefix. Call sites are the header and the sandbox's key table;
    /// never format it into a message.
    pub fn expose(&self) -> &str {
        &self.token
    }

    /// The key id (`SU-...`) when the token has the usual `id:secret` form. Not a secret: it
    /// names the key in messages, the way Connect's portal lists keys.
    pub fn key_id(&self) -> Option<&str> {
        self.token
            .split_once(':')
            .map(|(id, _)| id)
            .filter(|id| !id.is_empty())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey ***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_keys_with_or_without_prefix() {
        let a = ApiKey::new("ApiKey SU-123-456:abcdef").expect("valid key");
        let b = ApiKey::new("SU-123-456:abcdef").expect("valid key");
        let c = ApiKey::new("  apikey   SU-123-456:abcdef\n").expect("valid key");
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.expose(), "SU-123-456:abcdef");
        assert_eq!(a.key_id(), Some("SU-123-456"));
        assert_eq!(
            a.header_value().to_str().expect("ascii"),
            "ApiKey SU-123-456:abcdef"
        );
        assert!(a.header_value().is_sensitive());
    }

    #[test]
    fn rejects_empty_and_unsafe_keys() {
        assert_eq!(ApiKey::new("  "), Err(ApiKeyError::Empty));
        assert_eq!(ApiKey::new("ApiKey "), Err(ApiKeyError::Empty));
        assert_eq!(ApiKey::new("SU-1:a\nb"), Err(ApiKeyError::NotHeaderSafe));
    }

    #[test]
    fn never_prints_the_secret() {
        let key = ApiKey::new("SU-123-456:topsecret").expect("valid key");
        for shown in [
            format!("{key:?}"),
            format!("{key}"),
            format!("{:#?}", Some(&key)),
        ] {
            assert!(!shown.contains("topsecret"), "{shown}");
        }
    }
}
