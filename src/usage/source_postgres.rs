//! Usage straight from a PostgreSQL database: `USAGE_SOURCE=postgres://user@host:5432/db` and
//! a query (`USAGE_QUERY`, or the default over the documented table [`DEFAULT_TABLE`]) whose
//! `$1` and `$2` are the month's start (inclusive) and end (exclusive), returning columns named
//! like the usage contract.
//!
//! Why it is built this way:
//! - The query runs in a read-only, repeatable-read transaction through a portal (a server-side
//!   cursor) read [`CHUNK`] rows at a time, so a month of any size streams in bounded memory,
//!   from one consistent snapshot, and a query cannot change the vendor's data.
//! - The statement is prepared first: its columns and their types are checked before a row is
//!   read, so a missing column or an unsupported type is one clear error, not a million bad
//!   records.
//! - Values are decoded from PostgreSQL's binary format here ([`numeric_text`] and friends):
//!   `numeric` exactly, as decimal text, never through a float.
//! - The password (from the URL, `USAGE_SOURCE_TOKEN` or `PGPASSWORD`) is kept as a
//!   [`Secret`] apart from the URL shown in messages, which never holds it.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, pin_mut, stream};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{Client, IsolationLevel, Statement};
use tracing::debug;

use super::record::{Cell, Cells, FIELDS, Position, REQUIRED_FIELDS, SourceItem};
use super::source::{
    Batches, PGPASSWORD, SourceError, USAGE_QUERY, USAGE_SOURCE_TOKEN, UsageSource,
};
use connect_client::month::Month;
use connect_client::secret::Secret;

/// The table the default query reads (and `sandbox --export-usage` fills).
pub const DEFAULT_TABLE: &str = "connect_usage_records";

/// The query used when `USAGE_QUERY` is not set.
pub const DEFAULT_QUERY: &str = "SELECT subscription_id, item_mpn, quantity, start_time, end_time, \
     record_id, note, category FROM connect_usage_records \
     WHERE start_time >= $1 AND start_time < $2";

/// Rows fetched from the portal at a time.
pub const CHUNK: i32 = 8192;

/// Records handed over per batch.
const BATCH: usize = 4096;

/// How the connection uses TLS, as libpq's `sslmode` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, without checking its certificate (libpq's default).
    Prefer,
    /// TLS or nothing; the certificate is not checked (unless a root certificate is given,
    /// as libpq does).
    Require,
    /// TLS with a certificate signed by a trusted authority, whatever its name.
    VerifyCa,
    /// TLS with a trusted certificate for the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the database is, how to log in, and what to ask it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSpec {
    /// The URL without password and TLS options, as tokio-postgres reads it.
    connect: String,
    /// The URL as shown in messages: no password, no query string.
    shown: String,
    password: Option<Secret>,
    ssl_mode: SslMode,
    root_cert: Option<PathBuf>,
    query: String,
    /// `USAGE_QUERY` was set.
    custom_query: bool,
}

fn config_error(reason: impl fmt::Display) -> SourceError {
    SourceError::Config(format!("USAGE_SOURCE (PostgreSQL): {reason}"))
}

/// A tokio-postgres error with its causes, which its own `Display` leaves out.
fn chain(e: &tokio_postgres::Error) -> String {
    connect_client::error_text::error_text(e)
}

impl PostgresSpec {
    /// Reads a `postgres://` URL; `lookup` gives `USAGE_QUERY`, `USAGE_SOURCE_TOKEN` and
    /// `PGPASSWORD`.
    pub fn parse(
        url: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<PostgresSpec, SourceError> {
        let mut parsed = reqwest::Url::parse(url).map_err(|e| {
            config_error(format!(
                "not a URL ({e}); write postgres://user@host:5432/database"
            ))
        })?;
        let from_url = (!parsed.password().unwrap_or_default().is_empty()).then(|| {
            let raw = parsed.password().unwrap_or_default();
            Secret::new(percent_encoding::percent_decode_str(raw).decode_utf8_lossy())
        });
        let _ = parsed.set_password(None);
        let mut ssl_mode = SslMode::Prefer;
        let mut root_cert = None;
        let mut kept: Vec<(String, String)> = Vec::new();
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "sslmode" => {
                    ssl_mode = SslMode::parse(&v).ok_or_else(|| {
                        config_error(format!(
                            "sslmode={v:?} is not one of disable, prefer, require, verify-ca, verify-full"
                        ))
                    })?;
                }
                "sslrootcert" => root_cert = Some(PathBuf::from(v.as_ref())),
                "password" => {
                    return Err(config_error(
                        "give the password in USAGE_SOURCE_TOKEN or PGPASSWORD, not as ?password=",
                    ));
                }
                _ => kept.push((k.into_owned(), v.into_owned())),
            }
        }
        parsed.set_query(None);
        if !kept.is_empty() {
            parsed.query_pairs_mut().extend_pairs(kept);
        }
        let shown = {
            let mut s = parsed.clone();
            s.set_query(None);
            s.to_string()
        };
        let connect = parsed.to_string();
        // Checked now, so that a bad option is a configuration error, not a failed month.
        let config =
            tokio_postgres::Config::from_str(&connect).map_err(|e| config_error(chain(&e)))?;
        if config.get_hosts().is_empty() {
            return Err(config_error(
                "no host: write postgres://user@host:5432/database",
            ));
        }
        let password = from_url
            .or_else(|| {
                lookup(USAGE_SOURCE_TOKEN)
                    .filter(|t| !t.is_empty())
                    .map(Secret::new)
            })
            .or_else(|| {
                lookup(PGPASSWORD)
                    .filter(|t| !t.is_empty())
                    .map(Secret::new)
            })
            .or_else(|| {
                std::env::var(PGPASSWORD)
                    .ok()
                    .filter(|t| !t.is_empty())
                    .map(Secret::new)
            });
        let query = lookup(USAGE_QUERY).filter(|q| !q.trim().is_empty());
        Ok(PostgresSpec {
            connect,
            shown,
            password,
            ssl_mode,
            root_cert,
            custom_query: query.is_some(),
            query: query.unwrap_or_else(|| DEFAULT_QUERY.to_owned()),
        })
    }

    /// The database as shown in messages (no password).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// A failed connection: a refused password is a setting to fix ([`SourceError::Refused`]).
    fn connect_error(&self, e: &tokio_postgres::Error, who: &Who) -> SourceError {
        let reason = connect_reason(e, who, self);
        match e.as_db_error().map(|db| db.code()) {
            Some(code) if *code == SqlState::INVALID_PASSWORD => SourceError::Refused {
                source_name: format!("PostgreSQL {}", self.shown),
                reason,
            },
            _ => self.error(reason),
        }
    }

    fn error(&self, reason: impl Into<String>) -> SourceError {
        SourceError::Database {
            target: self.shown.clone(),
            reason: reason.into(),
        }
    }

    /// Connects, with TLS as `sslmode` says; the connection runs on a task of its own until
    /// the client is dropped.
    pub async fn connect(&self) -> Result<Client, SourceError> {
        let mut config =
            tokio_postgres::Config::from_str(&self.connect).map_err(|e| config_error(chain(&e)))?;
        if let Some(p) = &self.password {
            config.password(p.expose());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(15));
        }
        if config.get_application_name().is_none() {
            config.application_name("connect-usage");
        }
        let who = self.who(&config);
        let client = if self.ssl_mode == SslMode::Disable {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| self.connect_error(&e, &who))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    debug!(error = %e, "PostgreSQL connection ended");
                }
            });
            client
        } else {
            config.ssl_mode(if self.ssl_mode == SslMode::Prefer {
                tokio_postgres::config::SslMode::Prefer
            } else {
                tokio_postgres::config::SslMode::Require
            });
            let tls =
                tls_config(self.ssl_mode, self.root_cert.as_deref()).map_err(|e| self.error(e))?;
            let (client, connection) = config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
                .await
                .map_err(|e| self.connect_error(&e, &who))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    debug!(error = %e, "PostgreSQL connection ended");
                }
            });
            client
        };
        Ok(client)
    }

    /// The user and server, for messages.
    fn who(&self, config: &tokio_postgres::Config) -> Who {
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        Who {
            user: config.get_user().unwrap_or("(the system user)").to_owned(),
            server: format!("{host}:{port}"),
            database: config
                .get_dbname()
                .or(config.get_user())
                .unwrap_or_default()
                .to_owned(),
            has_password: self.password.is_some(),
        }
    }
}

/// Who connects where, for messages.
struct Who {
    user: String,
    server: String,
    database: String,
    has_password: bool,
}

/// What went wrong while connecting, said so that a person knows what to do.
fn connect_reason(e: &tokio_postgres::Error, who: &Who, spec: &PostgresSpec) -> String {
    let Who {
        user,
        server,
        database,
        has_password,
    } = who;
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD && !has_password {
            return format!(
                "the server at {server} asks a password of user {user:?} and none was given: put it in {USAGE_SOURCE_TOKEN} (a secure variable) or {PGPASSWORD}"
            );
        }
        if *code == SqlState::INVALID_PASSWORD {
            return format!(
                "password authentication failed for user {user:?} at {server}: check the password (in the URL, {USAGE_SOURCE_TOKEN} or {PGPASSWORD})"
            );
        }
        if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            && db.message().contains("no encryption")
        {
            return format!(
                "the server at {server} requires TLS for user {user:?} (sslmode={}): add ?sslmode=require, or verify-full with sslrootcert=, to USAGE_SOURCE",
                spec.ssl_mode.name()
            );
        }
        if *code == SqlState::INVALID_CATALOG_NAME {
            return format!("there is no database {database:?} at {server}");
        }
        return format!(
            "the server at {server} refused user {user:?}: {}",
            db.message()
        );
    }
    let text = e.to_string();
    let cause = std::error::Error::source(e)
        .map(ToString::to_string)
        .unwrap_or_default();
    if text.starts_with("error performing TLS handshake") {
        if cause.contains("server does not support TLS") {
            return format!(
                "the server at {server} does not accept TLS, and sslmode={} asks for it: enable ssl on the server, or use sslmode=prefer",
                spec.ssl_mode.name()
            );
        }
        let check = match &spec.root_cert {
            Some(p) => format!("checked against sslrootcert={}", p.display()),
            None => "checked against the system's trusted authorities (give sslrootcert=PATH for a private one)".into(),
        };
        return format!(
            "the TLS handshake with {server} failed: {cause} (sslmode={}: the certificate is {check})",
            spec.ssl_mode.name()
        );
    }
    if cause.contains("password missing") {
        return format!(
            "the server at {server} asks a password of user {user:?} and none was given: put it in {USAGE_SOURCE_TOKEN} (a secure variable) or {PGPASSWORD}"
        );
    }
    if text.starts_with("error connecting to server") || text.starts_with("timeout") {
        let io = io_cause(e);
        return match io.map(std::io::Error::kind) {
            Some(std::io::ErrorKind::ConnectionRefused) => format!(
                "cannot connect to {server}: connection refused (is PostgreSQL running there, listening on TCP at that port?)"
            ),
            Some(std::io::ErrorKind::TimedOut) => {
                format!("cannot connect to {server}: timed out")
            }
            _ if cause.contains("lookup") || cause.contains("resolve") => format!(
                "cannot connect to {server}: unknown host (check the host name in USAGE_SOURCE)"
            ),
            _ if text.starts_with("timeout") => format!("cannot connect to {server}: timed out"),
            _ => format!("cannot connect to {server}: {cause}"),
        };
    }
    format!("cannot connect to {server} as {user:?}: {}", chain(e))
}

fn io_cause(e: &tokio_postgres::Error) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = s.source();
    }
    None
}

/// The rustls client configuration for a TLS mode.
fn tls_config(
    mode: SslMode,
    root_cert: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, String> {
    connect_client::install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    // libpq checks nothing in prefer/require, unless a root certificate is given (then
    // require behaves as verify-ca).
    let verify = match mode {
        SslMode::VerifyCa | SslMode::VerifyFull => true,
        SslMode::Require | SslMode::Prefer => root_cert.is_some(),
        SslMode::Disable => false,
    };
    if !verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(tls::Unchecked(provider)))
            .with_no_client_auth());
    }
    let roots = tls::roots(root_cert)?;
    let webpki =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("cannot use the root certificates: {e}"))?;
    Ok(if mode == SslMode::VerifyFull {
        builder.with_webpki_verifier(webpki).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(tls::AnyName(webpki)))
            .with_no_client_auth()
    })
}

/// The certificate checks of the TLS modes that check less than rustls does by default.
mod tls {
    use std::path::Path;
    use std::sync::Arc;

    use rustls::DigitallySignedStruct;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    /// The authorities to trust: the PEM file given, or the system's.
    pub fn roots(file: Option<&Path>) -> Result<rustls::RootCertStore, String> {
        let mut roots = rustls::RootCertStore::empty();
        match file {
            Some(path) if path.as_os_str() != "system" => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("cannot read sslrootcert={}: {e}", path.display()))?;
                for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
                    let cert: CertificateDer<'static> = cert.map_err(|e| {
                        format!(
                            "sslrootcert={} is not PEM certificates: {e}",
                            path.display()
                        )
                    })?;
                    roots.add(cert).map_err(|e| {
                        format!("sslrootcert={}: unusable certificate: {e}", path.display())
                    })?;
                }
            }
            _ => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        if roots.is_empty() {
            return Err("no trusted root certificate: give sslrootcert=PATH".into());
        }
        Ok(roots)
    }

    /// sslmode=prefer/require: encrypted, not authenticated (libpq's meaning).
    #[derive(Debug)]
    pub struct Unchecked(pub Arc<CryptoProvider>);

    impl ServerCertVerifier for Unchecked {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// sslmode=verify-ca: a trusted chain, whatever name the certificate is for.
    #[derive(Debug)]
    pub struct AnyName(pub Arc<WebPkiServerVerifier>);

    impl ServerCertVerifier for AnyName {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            match self
                .0
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
}

/// How a column's values are read, by its PostgreSQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decode {
    Text,
    Int2,
    Int4,
    Int8,
    Numeric,
    Float4,
    Float8,
    /// `timestamp` and `timestamptz`: microseconds since 2000-01-01 UTC.
    Timestamp,
    Date,
    Uuid,
}

impl Decode {
    fn of(ty: &Type) -> Option<Decode> {
        Some(match *ty {
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => Decode::Text,
            Type::INT2 => Decode::Int2,
            Type::INT4 => Decode::Int4,
            Type::INT8 => Decode::Int8,
            Type::NUMERIC => Decode::Numeric,
            Type::FLOAT4 => Decode::Float4,
            Type::FLOAT8 => Decode::Float8,
            Type::TIMESTAMP | Type::TIMESTAMPTZ => Decode::Timestamp,
            Type::DATE => Decode::Date,
            Type::UUID => Decode::Uuid,
            _ => return None,
        })
    }
}

/// What a field's column may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    Id,
    Quantity,
    Time,
}

impl FieldKind {
    fn of(field: &str) -> FieldKind {
        match field {
            "quantity" => FieldKind::Quantity,
            "start_time" | "end_time" => FieldKind::Time,
            _ => FieldKind::Id,
        }
    }

    fn accepts(self, d: Decode) -> bool {
        use Decode::*;
        match self {
            FieldKind::Id => matches!(d, Text | Int2 | Int4 | Int8 | Numeric | Uuid),
            FieldKind::Quantity => {
                matches!(d, Text | Int2 | Int4 | Int8 | Numeric | Float4 | Float8)
            }
            FieldKind::Time => matches!(d, Text | Timestamp | Date),
        }
    }

    fn accepted(self) -> &'static str {
        match self {
            FieldKind::Id => "text, varchar, char, an integer type, numeric or uuid",
            FieldKind::Quantity => {
                "numeric, an integer type, real, double precision, or text holding a decimal"
            }
            FieldKind::Time => "timestamptz, timestamp (read as UTC), date, or RFC 3339 text",
        }
    }
}

/// Where each field is among the query's columns, and how to read it.
#[derive(Debug, Clone)]
struct Layout {
    /// By [`FIELDS`] order: the column index and its decoding.
    columns: [Option<(usize, Decode)>; 8],
}

/// Checks the query's columns against the usage contract.
fn layout(statement: &Statement) -> Result<Layout, String> {
    let columns = statement.columns();
    let names: Vec<String> = columns
        .iter()
        .map(|c| c.name().to_ascii_lowercase())
        .collect();
    let missing: Vec<&str> = REQUIRED_FIELDS
        .iter()
        .copied()
        .filter(|f| !names.iter().any(|n| n == f))
        .collect();
    if !missing.is_empty() {
        let returned = if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        };
        return Err(format!(
            "the query returns no column(s) {} (it returns {returned}); name the columns like the usage contract, e.g. SELECT usage_qty AS quantity, ...",
            missing.join(", ")
        ));
    }
    let mut out = [None; 8];
    for (slot, field) in out.iter_mut().zip(FIELDS) {
        let Some(i) = names.iter().position(|n| n == field) else {
            continue;
        };
        let ty = columns[i].type_();
        let kind = FieldKind::of(field);
        match Decode::of(ty).filter(|d| kind.accepts(*d)) {
            Some(d) => *slot = Some((i, d)),
            None => {
                return Err(format!(
                    "column {field} is of type {}, which is not read as a {field}; it may be {} (cast it in the query, e.g. {field}::text)",
                    ty.name(),
                    kind.accepted()
                ));
            }
        }
    }
    Ok(Layout { columns: out })
}

/// A column's value as PostgreSQL sent it (binary), whatever its type.
struct RawValue<'a>(&'a [u8]);

impl<'a> FromSql<'a> for RawValue<'a> {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(raw))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from the Unix epoch to PostgreSQL's.
const PG_EPOCH_DAYS: i64 = 10_957;

fn be<const N: usize>(raw: &[u8]) -> Option<[u8; N]> {
    raw.try_into().ok()
}

/// A binary value as a cell of its field.
fn cell<'a>(raw: &'a [u8], decode: Decode) -> Cell<'a> {
    let bad = |what: &str| Cell::Bad(format!("the database sent a malformed {what}"));
    match decode {
        Decode::Text => match std::str::from_utf8(raw) {
            Ok(s) => Cell::Text(Cow::Borrowed(s)),
            Err(_) => Cell::Bad("is not UTF-8 text".into()),
        },
        Decode::Int2 => be::<2>(raw).map_or_else(
            || bad("smallint"),
            |b| Cell::Text(i16::from_be_bytes(b).to_string().into()),
        ),
        Decode::Int4 => be::<4>(raw).map_or_else(
            || bad("integer"),
            |b| Cell::Text(i32::from_be_bytes(b).to_string().into()),
        ),
        Decode::Int8 => be::<8>(raw).map_or_else(
            || bad("bigint"),
            |b| Cell::Text(i64::from_be_bytes(b).to_string().into()),
        ),
        Decode::Numeric => match numeric_text(raw) {
            Ok(t) => Cell::Text(t.into()),
            Err(e) => Cell::Bad(e),
        },
        Decode::Float4 => be::<4>(raw).map_or_else(
            || bad("real"),
            |b| {
                float_cell(
                    f64::from(f32::from_be_bytes(b)),
                    &f32::from_be_bytes(b).to_string(),
                )
            },
        ),
        Decode::Float8 => be::<8>(raw).map_or_else(
            || bad("double precision"),
            |b| {
                let v = f64::from_be_bytes(b);
                float_cell(v, &v.to_string())
            },
        ),
        Decode::Timestamp => be::<8>(raw).map_or_else(
            || bad("timestamp"),
            |b| match i64::from_be_bytes(b) {
                i64::MAX | i64::MIN => Cell::Bad("infinity is not a time".into()),
                micros => micros
                    .checked_add(PG_EPOCH_MICROS)
                    .and_then(DateTime::<Utc>::from_timestamp_micros)
                    .map_or_else(|| bad("timestamp"), Cell::At),
            },
        ),
        Decode::Date => be::<4>(raw).map_or_else(
            || bad("date"),
            |b| match i32::from_be_bytes(b) {
                i32::MAX | i32::MIN => Cell::Bad("infinity is not a time".into()),
                days => (i64::from(days) + PG_EPOCH_DAYS)
                    .checked_mul(86_400)
                    .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
                    .map_or_else(|| bad("date"), Cell::At),
            },
        ),
        Decode::Uuid => be::<16>(raw).map_or_else(
            || bad("uuid"),
            |b| {
                let mut s = String::with_capacity(36);
                for (i, byte) in b.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        s.push('-');
                    }
                    let _ = write!(s, "{byte:02x}");
                }
                Cell::Text(s.into())
            },
        ),
    }
}

/// A float as its shortest decimal text (the text that reads back as the same float), so
/// `0.1` stored as `double precision` is the quantity 0.1.
fn float_cell(v: f64, shortest: &str) -> Cell<'static> {
    if v.is_finite() {
        Cell::Text(Cow::Owned(shortest.to_owned()))
    } else {
        Cell::Bad(format!("{shortest} is not a number"))
    }
}

/// PostgreSQL's binary `numeric` as exact decimal text with its scale (`12.500`): a count of
/// base-10000 digits, the weight of the first, a sign, the display scale, then the digits.
pub fn numeric_text(raw: &[u8]) -> Result<String, String> {
    let word = |i: usize| -> Result<u16, String> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "the database sent a malformed numeric".to_owned())
    };
    let ndigits = word(0)? as usize;
    let weight = i32::from(word(1)? as i16);
    let sign = word(2)?;
    let dscale = word(3)? as usize;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err("NaN is not a number".into()),
        0xD000 => return Err("Infinity is not a number".into()),
        0xF000 => return Err("-Infinity is not a number".into()),
        _ => return Err("the database sent a malformed numeric".into()),
    }
    let mut digits = Vec::with_capacity(ndigits);
    for i in 0..ndigits {
        let d = word(4 + i)?;
        if d > 9999 {
            return Err("the database sent a malformed numeric".into());
        }
        digits.push(d);
    }
    let group = |i: i32| -> u16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::with_capacity(8 + 4 * ndigits + dscale);
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                let _ = write!(out, "{}", group(0));
            } else {
                let _ = write!(out, "{:04}", group(i));
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut frac = String::with_capacity(dscale + 4);
        let mut k = 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", group(weight + k));
            k += 1;
        }
        frac.truncate(dscale);
        out.push_str(&frac);
    }
    Ok(out)
}

/// The value bound to `$1`/`$2`, in the type the query compares it with.
fn bound(ty: &Type, at: DateTime<Utc>) -> Option<Box<dyn ToSql + Sync + Send>> {
    Some(match *ty {
        Type::TIMESTAMPTZ => Box::new(at),
        Type::TIMESTAMP => Box::new(at.naive_utc()),
        Type::DATE => Box::new(at.date_naive()),
        Type::TEXT | Type::VARCHAR | Type::UNKNOWN => {
            Box::new(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }
        _ => return None,
    })
}

/// A PostgreSQL database as a usage source.
#[derive(Debug)]
pub struct PostgresSource {
    spec: PostgresSpec,
}

impl PostgresSource {
    pub fn new(spec: PostgresSpec) -> PostgresSource {
        PostgresSource { spec }
    }
}

type Sender = mpsc::Sender<Result<Vec<SourceItem>, SourceError>>;

impl UsageSource for PostgresSource {
    fn describe(&self) -> String {
        if self.spec.custom_query {
            format!("PostgreSQL {} ({USAGE_QUERY})", self.spec.shown)
        } else {
            format!("PostgreSQL {} (table {DEFAULT_TABLE})", self.spec.shown)
        }
    }

    fn records(&self, period: Month) -> Batches {
        let (tx, rx) = mpsc::channel(8);
        let spec = self.spec.clone();
        tokio::spawn(async move {
            if let Err(e) = read_month(&spec, period, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Box::pin(stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|batch| (batch, rx))
        }))
    }
}

/// Reads the month: prepare and check, then stream the rows through a portal.
async fn read_month(spec: &PostgresSpec, period: Month, tx: &Sender) -> Result<(), SourceError> {
    let mut client = spec.connect().await?;
    let query_error = |e: tokio_postgres::Error| spec.error(query_reason(&e, spec));
    let statement = client.prepare(&spec.query).await.map_err(query_error)?;
    let layout = layout(&statement).map_err(|e| spec.error(e))?;
    let params = statement.params();
    if params.len() > 2 {
        return Err(spec.error(format!(
            "the query has {} parameters; it may use $1 (the month's first instant) and $2 (the next month's), no more",
            params.len()
        )));
    }
    let mut values = Vec::with_capacity(2);
    for (i, (ty, at)) in params
        .iter()
        .zip([period.start(), period.end_exclusive()])
        .enumerate()
    {
        values.push(bound(ty, at).ok_or_else(|| {
            spec.error(format!(
                "the query compares ${} with a {}; it stands for an instant: compare it with timestamptz, timestamp, date or text (or cast it: ${}::timestamptz)",
                i + 1,
                ty.name(),
                i + 1
            ))
        })?);
    }
    let refs: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|v| v.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let transaction = client
        .build_transaction()
        .read_only(true)
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(query_error)?;
    let portal = transaction
        .bind(&statement, &refs)
        .await
        .map_err(query_error)?;
    let mut ordinal = 0u64;
    let mut batch: Vec<SourceItem> = Vec::with_capacity(BATCH);
    loop {
        let rows = transaction
            .query_portal_raw(&portal, CHUNK)
            .await
            .map_err(query_error)?;
        pin_mut!(rows);
        let mut got = 0;
        while let Some(row) = rows.next().await {
            let row = row.map_err(query_error)?;
            got += 1;
            ordinal += 1;
            batch.push(item(&row, &layout, ordinal));
            if batch.len() >= BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if tx.send(Ok(full)).await.is_err() {
                    return Ok(());
                }
            }
        }
        if got < CHUNK {
            break;
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch)).await;
    }
    // Read-only: nothing to keep; the snapshot is let go.
    let _ = transaction.rollback().await;
    Ok(())
}

/// A row as a record (or the rejection of one).
fn item(row: &tokio_postgres::Row, layout: &Layout, ordinal: u64) -> SourceItem {
    let get = |i: usize| -> Option<Cell<'_>> {
        let (column, decode) = layout.columns[i]?;
        match row.try_get::<_, Option<RawValue<'_>>>(column) {
            Ok(Some(RawValue(raw))) => Some(cell(raw, decode)),
            Ok(None) => None,
            Err(e) => Some(Cell::Bad(e.to_string())),
        }
    };
    Cells {
        subscription_id: get(0),
        item_mpn: get(1),
        quantity: get(2),
        start_time: get(3),
        end_time: get(4),
        record_id: get(5),
        note: get(6),
        category: get(7),
    }
    .into_item(Position {
        ordinal,
        line: None,
    })
}

/// What went wrong with the query: the database's own message, where in the query, and its
/// hint.
fn query_reason(e: &tokio_postgres::Error, spec: &PostgresSpec) -> String {
    let Some(db) = e.as_db_error() else {
        return format!("the query failed: {}", chain(e));
    };
    let which = if spec.custom_query {
        USAGE_QUERY.to_owned()
    } else {
        format!("the default query (over table {DEFAULT_TABLE}; set {USAGE_QUERY} to read another)")
    };
    let mut out = format!("{which} failed: {}", db.message());
    if let Some(tokio_postgres::error::ErrorPosition::Original(at)) = db.position() {
        let at = *at as usize;
        let chars: Vec<char> = spec.query.chars().collect();
        let from = at.saturating_sub(1);
        let near: String = chars.iter().skip(from).take(30).collect();
        let _ = write!(out, " (at character {at}: {near:?})");
    }
    if let Some(hint) = db.hint() {
        let _ = write!(out, "; hint: {hint}");
    }
    if *db.code() == SqlState::UNDEFINED_TABLE && !spec.custom_query {
        let _ = write!(
            out,
            "; create the table (see docs/sources.md), or set {USAGE_QUERY} to a query over your own"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_are_read_exactly() {
        // 12.5 with scale 3: digits [12, 5000], weight 0.
        assert_eq!(
            numeric_text(&numeric(2, 0, 0, 3, &[12, 5000])).as_deref(),
            Ok("12.500")
        );
        // 123456789.0001: [1, 2345, 6789, 1], weight 2, scale 4.
        assert_eq!(
            numeric_text(&numeric(4, 2, 0, 4, &[1, 2345, 6789, 1])).as_deref(),
            Ok("123456789.0001")
        );
        // -0.00042: [4, 2000], weight -1, scale 5.
        assert_eq!(
            numeric_text(&numeric(2, -1, 0x4000, 5, &[4, 2000])).as_deref(),
            Ok("-0.00042")
        );
        // 10000 (trailing zero groups dropped): [1], weight 1.
        assert_eq!(
            numeric_text(&numeric(1, 1, 0, 0, &[1])).as_deref(),
            Ok("10000")
        );
        // Zero.
        assert_eq!(
            numeric_text(&numeric(0, 0, 0, 2, &[])).as_deref(),
            Ok("0.00")
        );
        // 30 significant digits, beyond any float.
        assert_eq!(
            numeric_text(&numeric(
                8,
                3,
                0,
                14,
                &[1234, 5678, 9012, 3456, 7890, 1234, 5678, 9012]
            ))
            .as_deref(),
            Ok("1234567890123456.78901234567890")
        );
        assert_eq!(
            numeric_text(&numeric(0, 0, 0xC000, 0, &[])),
            Err("NaN is not a number".into())
        );
        assert!(numeric_text(&[0, 1]).is_err());
        assert!(numeric_text(&numeric(1, 0, 0, 0, &[10_000])).is_err());
    }

    #[test]
    fn floats_are_their_shortest_decimal() {
        assert_eq!(
            cell(&0.1f64.to_be_bytes(), Decode::Float8),
            Cell::Text("0.1".into())
        );
        assert_eq!(
            cell(&0.1f32.to_be_bytes(), Decode::Float4),
            Cell::Text("0.1".into())
        );
        assert!(matches!(
            cell(&f64::NAN.to_be_bytes(), Decode::Float8),
            Cell::Bad(_)
        ));
    }

    #[test]
    fn times_count_from_postgres_epoch() {
        let micros: i64 = 24 * 3600 * 1_000_000 + 1;
        assert_eq!(
            cell(&micros.to_be_bytes(), Decode::Timestamp),
            Cell::At(
                DateTime::parse_from_rfc3339("2000-01-02T00:00:00.000001Z")
                    .expect("time")
                    .with_timezone(&Utc)
            )
        );
        assert_eq!(
            cell(&(-1i32).to_be_bytes(), Decode::Date),
            Cell::At(
                DateTime::parse_from_rfc3339("1999-12-31T00:00:00Z")
                    .expect("time")
                    .with_timezone(&Utc)
            )
        );
        assert!(matches!(
            cell(&i64::MAX.to_be_bytes(), Decode::Timestamp),
            Cell::Bad(_)
        ));
    }

    fn spec(url: &str, vars: &[(&str, &str)]) -> Result<PostgresSpec, SourceError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        PostgresSpec::parse(url, &|name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn the_password_is_kept_apart_from_the_url() {
        let s = spec(
            "postgres://reader:p%40ss@db.example:6543/usage?sslmode=verify-full&sslrootcert=/ca.pem&connect_timeout=5",
            &[],
        )
        .expect("spec");
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(s.shown(), "postgres://reader@db.example:6543/usage");
        assert!(!format!("{s:?}").contains("p@ss"));
        assert!(!s.connect.contains("p%40ss"));
        assert_eq!(s.ssl_mode, SslMode::VerifyFull);
        assert_eq!(
            s.root_cert.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
        assert!(s.connect.contains("connect_timeout=5"));
        assert!(!s.custom_query);
        let s = spec(
            "postgresql://reader@db.example/usage",
            &[(USAGE_SOURCE_TOKEN, "tok"), (USAGE_QUERY, "SELECT 1")],
        )
        .expect("spec");
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("tok"));
        assert!(s.custom_query);
        let s = spec(
            "postgresql://reader@db.example/usage",
            &[(PGPASSWORD, "pg")],
        )
        .expect("spec");
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("pg"));
    }

    #[test]
    fn bad_urls_say_what_to_write() {
        let e = spec("postgres://h/db?sslmode=sometimes", &[]).expect_err("mode");
        assert!(e.to_string().contains("sslmode=\"sometimes\""), "{e}");
        let e = spec("postgres://h/db?password=x", &[]).expect_err("password");
        assert!(e.to_string().contains("USAGE_SOURCE_TOKEN"), "{e}");
        assert!(!e.to_string().contains("=x"), "{e}");
        let e = spec("postgres://h/db?colour=blue", &[]).expect_err("option");
        assert!(e.to_string().contains("colour"), "{e}");
    }
}
