//! The one error type of the Connect client.
//!
//! Every error names the request that failed (method and path, never headers, so never the
//! key) and keeps what Connect said: HTTP status, `error_code` and `errors`. Errors of
//! non-idempotent requests whose effect on the server is unknown say so, because the caller
//! must re-read state before deciding to send them again.

use std::fmt;
use std::time::Duration;

use reqwest::Method;

use crate::rql::RenderError;

/// The request an error belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    pub method: Method,
    /// Path below the API base URL, with its query string.
    pub path: String,
}

impl fmt::Display for RequestLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Long RQL filters (id lists) would drown the message.
        const MAX: usize = 300;
        if self.path.len() > MAX {
            let mut cut = MAX;
            while !self.path.is_char_boundary(cut) {
                cut -= 1;
            }
            write!(f, "{} {}...", self.method, &self.path[..cut])
        } else {
            write!(f, "{} {}", self.method, self.path)
        }
    }
}

/// What went wrong.
#[derive(Debug)]
pub enum ErrorKind {
    /// Connect answered with an error status.
    Api {
        status: u16,
        error_code: Option<String>,
        errors: Vec<String>,
        /// `Retry-After`, when the server sent one.
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or broken, TLS failure, timeout.
    Transport {
        reason: String,
        /// True when the connection could not be opened: the request never left.
        connect: bool,
        timeout: bool,
        /// True when the host's name does not exist (not a DNS server failing for a while):
        /// asking again gives the same answer.
        unknown_host: bool,
    },
    /// An answer that is not what the API promises (bad JSON, bad `Content-Range`).
    Decode { reason: String },
    /// The query could not be rendered unambiguously.
    Query(RenderError),
    /// A bad argument given to the client (base URL, key, file).
    Invalid { reason: String },
}

/// An error from the Connect client. Boxed inside, so results stay small.
#[derive(Debug)]
pub struct ConnectError {
    inner: Box<Inner>,
}

#[derive(Debug)]
struct Inner {
    request: Option<RequestLine>,
    kind: ErrorKind,
    outcome_unknown: bool,
    attempts: u32,
}

impl ConnectError {
    pub(crate) fn new(request: Option<RequestLine>, kind: ErrorKind) -> ConnectError {
        ConnectError {
            inner: Box::new(Inner {
                request,
                kind,
                outcome_unknown: false,
                attempts: 1,
            }),
        }
    }

    pub fn invalid(reason: impl Into<String>) -> ConnectError {
        ConnectError::new(
            None,
            ErrorKind::Invalid {
                reason: reason.into(),
            },
        )
    }

    pub(crate) fn with_outcome_unknown(mut self) -> ConnectError {
        self.inner.outcome_unknown = true;
        self
    }

    pub(crate) fn with_attempts(mut self, attempts: u32) -> ConnectError {
        self.inner.attempts = attempts;
        self
    }

    pub fn request(&self) -> Option<&RequestLine> {
        self.inner.request.as_ref()
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.inner.kind
    }

    /// HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self.kind() {
            ErrorKind::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Connect's `error_code` (for example `AUTH_001`).
    pub fn error_code(&self) -> Option<&str> {
        match self.kind() {
            ErrorKind::Api { error_code, .. } => error_code.as_deref(),
            _ => None,
        }
    }

    /// Connect's `errors` messages.
    pub fn errors(&self) -> &[String] {
        match self.kind() {
            ErrorKind::Api { errors, .. } => errors,
            _ => &[],
        }
    }

    /// True when a non-idempotent request (POST) may have been applied although it failed:
    /// it was sent and then the connection broke, it timed out, or the server answered 5xx.
    /// Re-read the object's state instead of sending it again.
    pub fn outcome_unknown(&self) -> bool {
        self.inner.outcome_unknown
    }

    /// True when the request may still be applied after this error was returned: it timed
    /// out or lost its connection after being sent, or a gateway answered for a server that
    /// may still be working on it (502, 504). A server's own error answer (500, 503) means it
    /// has finished with the request, applied or not.
    pub fn may_still_apply(&self) -> bool {
        self.outcome_unknown()
            && match self.kind() {
                ErrorKind::Api { status, .. } => matches!(status, 502 | 504),
                ErrorKind::Transport { connect, .. } => !connect,
                _ => false,
            }
    }

    /// How many times the request was sent (more than one after retries).
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// The host's name does not exist: the address is wrong, not the network.
    pub fn is_unknown_host(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Transport {
                unknown_host: true,
                ..
            }
        )
    }

    /// Whether waiting and sending again could succeed (connection problems, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match self.kind() {
            ErrorKind::Api { status, .. } => *status >= 500 || *status == 429,
            ErrorKind::Transport { unknown_host, .. } => !unknown_host,
            _ => false,
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(request) = self.request() {
            write!(f, "{request}: ")?;
        }
        match self.kind() {
            ErrorKind::Api {
                status,
                error_code,
                errors,
                ..
            } => {
                write!(f, "HTTP {status}")?;
                if let Some(code) = error_code {
                    write!(f, " {code}")?;
                }
                if !errors.is_empty() {
                    write!(f, ": {}", errors.join("; "))?;
                }
            }
            ErrorKind::Transport {
                reason, timeout, ..
            } => {
                if *timeout {
                    write!(f, "timed out: {reason}")?;
                } else {
                    write!(f, "connection failed: {reason}")?;
                }
            }
            ErrorKind::Decode { reason } => write!(f, "unexpected response: {reason}")?,
            ErrorKind::Query(e) => write!(f, "{e}")?,
            ErrorKind::Invalid { reason } => write!(f, "{reason}")?,
        }
        if self.attempts() > 1 {
            write!(f, " (after {} attempts)", self.attempts())?;
        }
        if self.outcome_unknown() {
            write!(
                f,
                " (the request may have been applied: re-read the state before sending it again)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.kind() {
            ErrorKind::Query(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RenderError> for ConnectError {
    fn from(e: RenderError) -> Self {
        ConnectError::new(None, ErrorKind::Query(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_request_status_code_and_errors() {
        let e = ConnectError::new(
            Some(RequestLine {
                method: Method::POST,
                path: "/usage/files/UF-1/submit".into(),
            }),
            ErrorKind::Api {
                status: 400,
                error_code: Some("USG_002".into()),
                errors: vec!["Usage file is not ready.".into()],
                retry_after: None,
            },
        );
        assert_eq!(
            e.to_string(),
            "POST /usage/files/UF-1/submit: HTTP 400 USG_002: Usage file is not ready."
        );
        assert_eq!(e.status(), Some(400));
        assert_eq!(e.error_code(), Some("USG_002"));
        assert!(!e.is_transient());
        let e = e.with_outcome_unknown().with_attempts(2);
        assert!(e.to_string().contains("re-read the state"));
        assert!(e.to_string().contains("after 2 attempts"));
    }

    #[test]
    fn long_paths_are_shortened() {
        let line = RequestLine {
            method: Method::GET,
            path: format!("/assets?in(id,({}))", "AS-0000-0000-0000,".repeat(100)),
        };
        assert!(line.to_string().len() < 320);
    }
}
