//! Bearer-token authentication against the tokens file.
//!
//! **Owns** the tokens file format and the check of `Authorization: Bearer <token>`.
//! The file holds one `client_name sha256:<64 hex digits>` a line (the SHA-256 of the token,
//! never the token itself), `#` comments and blank lines; several lines, also for one client,
//! allow rotating a token without downtime. Client names are `[A-Za-z0-9._-]{1,64}`.
//!
//! **Promises**: a presented token is hashed and compared with *every* stored hash in constant
//! time (`subtle`), so neither the comparison nor the number of lines compared says how close a
//! guess was. The client name comes only from the file.
//!
//! **Limits**: tokens are bearer secrets; the API must sit behind TLS (a load balancer's) in
//! production.

use std::path::Path;

use axum::http::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A tokens file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read tokens file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("tokens file line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("tokens file {0} lists no token: no client could authenticate")]
    Empty(String),
}

/// The clients and the SHA-256 of each of their tokens.
#[derive(Debug, Clone)]
pub struct Tokens {
    entries: Vec<(String, [u8; 32])>,
}

/// Whether `name` is a valid client name (`[A-Za-z0-9._-]{1,64}`).
pub fn is_client_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Tokens {
    /// Read and parse the tokens file at `path`.
    ///
    /// # Errors
    /// The file cannot be read, a line is malformed (named by number), or it lists no token.
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokensError::Read { path: path.display().to_string(), source })?;
        let t = Self::parse(&text)?;
        if t.entries.is_empty() {
            return Err(TokensError::Empty(path.display().to_string()));
        }
        Ok(t)
    }

    /// Parse the file's text (may be empty).
    ///
    /// # Errors
    /// [`TokensError::Line`] for the first malformed line.
    pub fn parse(text: &str) -> Result<Self, TokensError> {
        let mut entries = Vec::new();
        // A byte-order mark (what some Windows editors write first) is not part of line 1.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |message: &str| TokensError::Line { line: i + 1, message: message.to_owned() };
            let mut parts = line.split_whitespace();
            let (Some(name), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err("expected `client_name sha256:<hex>`"));
            };
            if !is_client_name(name) {
                return Err(err("client name must be 1-64 of A-Z a-z 0-9 . _ -"));
            }
            let hex = hash.strip_prefix("sha256:").ok_or_else(|| err("hash must start with `sha256:`"))?;
            let digest = decode_hex32(hex).ok_or_else(|| err("expected 64 hex digits after `sha256:`"))?;
            entries.push((name.to_owned(), digest));
        }
        Ok(Self { entries })
    }

    /// The client whose token is presented in `authorization` (`Bearer <token>`), or `None`
    /// for a missing, malformed or unknown token.
    pub fn authenticate(&self, authorization: Option<&HeaderValue>) -> Option<&str> {
        let value = authorization?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return None;
        }
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (name, stored) in &self.entries {
            // Every line is compared, whatever matched before.
            if bool::from(stored.ct_eq(&presented)) && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// Number of token lines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The line to put in a tokens file for `client` and `token` (`client sha256:<hex>`).
pub fn token_line(client: &str, token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{client} sha256:{hex}")
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    // Hex digits only: `from_str_radix` alone would take a leading `+` in a pair ("+a").
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bom_is_not_line_one_and_a_plus_is_not_a_hex_digit() {
        let line = token_line("web", "t");
        assert_eq!(Tokens::parse(&format!("\u{feff}{line}\n")).unwrap().len(), 1);
        let hex = line.split("sha256:").nth(1).unwrap();
        let plus = format!("web sha256:+{}", &hex[1..]);
        assert!(matches!(Tokens::parse(&plus), Err(TokensError::Line { line: 1, .. })), "{plus}");
    }

    fn bearer(t: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {t}")).unwrap()
    }

    #[test]
    fn the_right_token_names_its_client_others_name_none() {
        let text = format!(
            "# rotation: web has two tokens\n\n{}\n{}\n  {}  \n",
            token_line("web", "old-secret"),
            token_line("web", "new-secret"),
            token_line("ios-app", "ios-secret")
        );
        let t = Tokens::parse(&text).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.authenticate(Some(&bearer("old-secret"))), Some("web"));
        assert_eq!(t.authenticate(Some(&bearer("new-secret"))), Some("web"));
        assert_eq!(t.authenticate(Some(&bearer("ios-secret"))), Some("ios-app"));
        assert_eq!(
            t.authenticate(Some(&HeaderValue::from_static("bearer ios-secret"))),
            Some("ios-app"),
            "the scheme is case-insensitive"
        );
        assert_eq!(t.authenticate(Some(&bearer("wrong"))), None);
        assert_eq!(t.authenticate(None), None);
        assert_eq!(t.authenticate(Some(&HeaderValue::from_static("Basic d2ViOnNlY3JldA=="))), None);
        assert_eq!(t.authenticate(Some(&HeaderValue::from_static("Bearer "))), None);
        let hash_itself = token_line("x", "old-secret").split_once(':').unwrap().1.to_owned();
        assert_eq!(t.authenticate(Some(&bearer(&hash_itself))), None, "the stored hash is not a token");
    }

    #[test]
    fn malformed_lines_are_named() {
        for (text, line) in [
            ("web sha256:abc", 1),
            ("# c\nweb plain-token", 2),
            ("web", 1),
            ("we b sha256:00", 1),
            ("bad/name sha256:0000000000000000000000000000000000000000000000000000000000000000", 1),
            ("web sha256:zz00000000000000000000000000000000000000000000000000000000000000", 1),
        ] {
            match Tokens::parse(text) {
                Err(TokensError::Line { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
