//! `quota policy activate|shadow|rollback|status --server URL`: the policy
//! lifecycle of a running service, over its admin API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

/// Where the service is and how to authenticate.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The service's base URL (`http://` only; put TLS in front of it).
    #[arg(long, value_name = "URL", env = "QUOTA_SERVER")]
    server: String,
    /// A file holding the admin token; default: `QUOTA_ADMIN_TOKEN`, else `var/admin-token`.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

impl ServerArgs {
    fn token(&self) -> anyhow::Result<String> {
        if self.token_file.is_none()
            && let Ok(token) = std::env::var("QUOTA_ADMIN_TOKEN")
            && !token.trim().is_empty()
        {
            return Ok(token.trim().to_owned());
        }
        let path = self
            .token_file
            .clone()
            .unwrap_or_else(|| PathBuf::from("var/admin-token"));
        let token = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the admin token from `{}`", path.display()))?;
        Ok(token.trim().to_owned())
    }

    /// Sends one request; returns the status and the JSON body.
    fn send(&self, method: &str, path: &str, body: Option<&[u8]>) -> anyhow::Result<(u16, Value)> {
        self.send_signed(method, path, body, None)
    }

    /// Sends one request, with a policy's detached signature in the
    /// `Quota-Policy-Signature` header when given.
    fn send_signed(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        signature: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let token = self.token()?;
        let rest = self
            .server
            .strip_prefix("http://")
            .context("`--server` must be an http:// URL")?;
        let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_end_matches('/');
        let target = if prefix.is_empty() {
            path.to_owned()
        } else {
            format!("/{prefix}{path}")
        };
        let address = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let mut stream =
            TcpStream::connect(&address).with_context(|| format!("cannot connect to {address}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let body = body.unwrap_or_default();
        let signature = match signature {
            Some(line) => {
                anyhow::ensure!(
                    line.bytes().all(|b| b.is_ascii_graphic()),
                    "a signature is one line of ASCII"
                );
                format!("Quota-Policy-Signature: {line}\r\n")
            }
            None => String::new(),
        };
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/wasm\r\nContent-Length: {}\r\n{signature}Connection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        parse_response(&response)
    }
}

/// Parses an HTTP/1.1 response with a JSON body (length-delimited, chunked
/// or up to the end of the connection).
fn parse_response(response: &[u8]) -> anyhow::Result<(u16, Value)> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the server's response has no end of headers")?;
    let head = std::str::from_utf8(&response[..split]).context("response headers not UTF-8")?;
    let mut body = response[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the server's response has no status")?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).context("the server's answer is not JSON")?
    };
    Ok((status, value))
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("a chunk has no size line")?;
        let size_text = std::str::from_utf8(&data[..line_end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("a chunk size is not hexadecimal")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).context("a chunk is cut short")?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

/// Prints the answer; exit 0 on success, 1 when the service refused.
fn report(status: u16, body: &Value) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(body)?);
    if (200..300).contains(&status) {
        Ok(ExitCode::SUCCESS)
    } else if status == 401 {
        bail!("the service refused the admin token (401)")
    } else {
        Ok(ExitCode::from(1))
    }
}

#[derive(Debug, Args)]
pub struct ActivateArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The policy component to upload; its signature, FILE.sig, goes along when it exists.
    file: PathBuf,
}

/// `quota policy activate`: upload and activate; exit 1 if rejected.
pub fn activate(args: &ActivateArgs) -> anyhow::Result<ExitCode> {
    let bytes = super::component_bytes(Some(&args.file))?;
    let signature = super::signature_beside(&args.file)?;
    let (status, body) =
        args.server
            .send_signed("POST", "/admin/policy", Some(&bytes), signature.as_deref())?;
    report(status, &body)
}

#[derive(Debug, Args)]
pub struct ShadowArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The policy component to shadow with.
    #[arg(required_unless_present = "clear")]
    file: Option<PathBuf>,
    /// Clear the shadow policy instead.
    #[arg(long, conflicts_with = "file")]
    clear: bool,
}

/// `quota policy shadow`: set or clear the shadow policy.
pub fn shadow(args: &ShadowArgs) -> anyhow::Result<ExitCode> {
    let (status, body) = match &args.file {
        Some(file) if !args.clear => {
            let bytes = super::component_bytes(Some(file))?;
            let signature = super::signature_beside(file)?;
            args.server.send_signed(
                "POST",
                "/admin/policy/shadow",
                Some(&bytes),
                signature.as_deref(),
            )?
        }
        _ => args.server.send("DELETE", "/admin/policy/shadow", None)?,
    };
    report(status, &body)
}

/// `quota policy rollback`: the previous policy becomes active again.
pub fn rollback(args: &ServerArgs) -> anyhow::Result<ExitCode> {
    let (status, body) = args.send("POST", "/admin/policy/rollback", None)?;
    report(status, &body)
}

/// `quota policy status`: active, previous, shadow, last load error.
pub fn status(args: &ServerArgs) -> anyhow::Result<ExitCode> {
    let (status, body) = args.send("GET", "/admin/policy", None)?;
    report(status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_length_or_chunks() {
        let plain = b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 9\r\n\r\n{\"a\":1}\r\n";
        assert_eq!(
            parse_response(plain).ok(),
            Some((422, serde_json::json!({"a": 1})))
        );
        let chunked =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:2}\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).ok(),
            Some((200, serde_json::json!({"a": 2})))
        );
    }
}
