//! A PostgreSQL URL as its users know it: `postgres://user@host:port/db`
//! with `sslmode` and `sslrootcert`, the password from the URL,
//! `PGPASSWORD` or the password file, and never shown in full.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use native_tls::{Certificate, TlsConnector};
use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::config::{Host, SslMode};

use crate::error::StoreError;

/// How TLS is used, as libpq's `sslmode` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, no certificate check (libpq's default).
    Prefer,
    /// TLS or no connection; the certificate is checked only against a
    /// given `sslrootcert`.
    Require,
    /// TLS, and the server's certificate chains to a trusted root.
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host.
    VerifyFull,
}

/// A parsed `postgres://` URL. Its `Display` hides the password.
#[derive(Clone)]
pub struct PgUrl {
    url: String,
    config: tokio_postgres::Config,
    tls: TlsMode,
    root_cert: Option<PathBuf>,
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PgUrl").field(&self.to_string()).finish()
    }
}

impl std::fmt::Display for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.url))
    }
}

/// Whether `text` names a PostgreSQL database rather than a file.
pub fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// `url` with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                let hidden = if userinfo.contains(':') { ":***" } else { "" };
                format!("{scheme}://{user}{hidden}@{host}")
            }
            None => head.to_owned(),
        },
        None => head.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***".to_owned(),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

impl FromStr for PgUrl {
    type Err = StoreError;

    fn from_str(url: &str) -> Result<Self, StoreError> {
        let invalid = |message: String| StoreError::invalid("db", message);
        if !is_postgres_url(url) {
            return Err(invalid(format!(
                "`{}` is not a postgres:// URL",
                redact(url)
            )));
        }
        // The driver knows sslmode up to `require`; the verifying modes and
        // the root certificate are ours to apply, so they are taken out.
        let (head, query) = url.split_once('?').unwrap_or((url, ""));
        let mut tls = TlsMode::Prefer;
        let mut root_cert = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", mode)) => {
                    tls = match mode {
                        "disable" => TlsMode::Disable,
                        "allow" | "prefer" => TlsMode::Prefer,
                        "require" => TlsMode::Require,
                        "verify-ca" => TlsMode::VerifyCa,
                        "verify-full" => TlsMode::VerifyFull,
                        other => {
                            return Err(invalid(format!(
                                "unknown sslmode `{other}` (disable, allow, prefer, require, verify-ca, verify-full)"
                            )));
                        }
                    }
                }
                Some(("sslrootcert", path)) => root_cert = Some(PathBuf::from(path)),
                _ => rest.push(pair),
            }
        }
        let driver_url = if rest.is_empty() {
            head.to_owned()
        } else {
            format!("{head}?{}", rest.join("&"))
        };
        let mut config = tokio_postgres::Config::from_str(&driver_url)
            .map_err(|e| invalid(format!("`{}`: {e}", redact(url))))?;
        config.ssl_mode(match tls {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        });
        if config.get_user().is_none() {
            config.user(
                std::env::var("PGUSER")
                    .or_else(|_| std::env::var("USER"))
                    .unwrap_or_else(|_| "postgres".to_owned()),
            );
        }
        if config.get_password().is_none()
            && let Some(password) = password_from_environment(&config)
        {
            config.password(password);
        }
        Ok(PgUrl {
            url: url.to_owned(),
            config,
            tls,
            root_cert,
        })
    }
}

impl PgUrl {
    /// The driver's configuration, password included.
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The TLS mode.
    pub fn tls_mode(&self) -> TlsMode {
        self.tls
    }

    /// The connector that applies the TLS mode.
    pub(crate) fn connector(&self) -> Result<MakeTlsConnector, StoreError> {
        let mut builder = TlsConnector::builder();
        if let Some(path) = &self.root_cert {
            let pem = std::fs::read(path).map_err(|e| {
                StoreError::invalid(
                    "sslrootcert",
                    format!("cannot read `{}`: {e}", path.display()),
                )
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                StoreError::invalid("sslrootcert", format!("`{}`: {e}", path.display()))
            })?;
            builder.add_root_certificate(cert);
        }
        match self.tls {
            // As libpq: encryption without a check, unless a root is given.
            TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => {
                if self.root_cert.is_none() {
                    builder.danger_accept_invalid_certs(true);
                }
                builder.danger_accept_invalid_hostnames(true);
            }
            TlsMode::VerifyCa => {
                builder.danger_accept_invalid_hostnames(true);
            }
            TlsMode::VerifyFull => {}
        }
        let connector = builder
            .build()
            .map_err(|e| StoreError::Database(format!("cannot set up TLS: {e}")))?;
        Ok(MakeTlsConnector::new(connector))
    }
}

/// `PGPASSWORD`, else the matching line of the password file
/// (`PGPASSFILE`, else `~/.pgpass`), as libpq looks them up.
fn password_from_environment(config: &tokio_postgres::Config) -> Option<String> {
    if let Ok(password) = std::env::var("PGPASSWORD") {
        return Some(password);
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".pgpass")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        // libpq matches a socket directory as `localhost`.
        _ => "localhost".to_owned(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default();
    let dbname = config.get_dbname().unwrap_or(user);
    pgpass_lookup(&text, [&host, &port, dbname, user])
}

/// The password of the first line of a password file matching (host,
/// port, database, user); `*` matches anything, `\` escapes.
fn pgpass_lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = split_pgpass(line);
            if fields.len() != 5 {
                return None;
            }
            let matches = fields
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want);
            matches.then(|| fields[4].clone())
        })
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(field)) = (chars.next(), fields.last_mut()) {
                    field.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://quota:s3cret@db:5432/quota?sslmode=require"),
            "postgres://quota:***@db:5432/quota?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://db/quota?user=q&password=s3cret"),
            "postgresql://db/quota?user=q&password=***"
        );
        assert_eq!(
            redact("postgres://quota@db/quota"),
            "postgres://quota@db/quota"
        );
        let url: PgUrl = "postgres://quota:s3cret@db/quota".parse().unwrap();
        assert!(!url.to_string().contains("s3cret"));
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.config().get_password(), Some(&b"s3cret"[..]));
    }

    #[test]
    fn sslmode_reads_as_libpq_does() {
        for (mode, want) in [
            ("disable", TlsMode::Disable),
            ("prefer", TlsMode::Prefer),
            ("require", TlsMode::Require),
            ("verify-ca", TlsMode::VerifyCa),
            ("verify-full", TlsMode::VerifyFull),
        ] {
            let url: PgUrl = format!("postgres://q@db/quota?sslmode={mode}")
                .parse()
                .unwrap();
            assert_eq!(url.tls_mode(), want);
            url.connector().unwrap();
        }
        let bad = "postgres://q:pw@db/quota?sslmode=sometimes".parse::<PgUrl>();
        let message = bad.unwrap_err().to_string();
        assert!(message.contains("sslmode"), "{message}");
        assert!(!message.contains("pw@"), "{message}");
    }

    #[test]
    fn the_password_file_is_matched_like_libpq() {
        let text = "# comment\nother:5432:*:*:nope\nlocalhost:5432:quota:q:pa\\:ss\n*:*:*:*:any\n";
        assert_eq!(
            pgpass_lookup(text, ["localhost", "5432", "quota", "q"]).as_deref(),
            Some("pa:ss")
        );
        assert_eq!(
            pgpass_lookup(text, ["db", "5433", "x", "y"]).as_deref(),
            Some("any")
        );
    }
}
