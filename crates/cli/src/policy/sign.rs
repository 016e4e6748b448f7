//! `quota policy keygen` and `quota policy sign`: an Ed25519 key pair, and
//! a detached signature over a component's manifest (docs/signing.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use quota_signing::{SecretKey, Version};

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Writes NAME.key (the private key, PKCS#8 PEM, mode 0600) and
    /// NAME.pub (the public key, SPKI PEM, for `quota serve --trusted-keys`).
    #[arg(long, value_name = "NAME")]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The private key (from `quota policy keygen`, or `openssl genpkey -algorithm ed25519`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The policy's name: a host accepts only rising versions per name.
    #[arg(long, value_name = "NAME")]
    name: String,
    /// The component's version (semver, e.g. `1.4.0`).
    #[arg(long, value_name = "VERSION")]
    version: String,
    /// Where to write the signature; default: FILE.sig.
    #[arg(long, value_name = "SIG")]
    out: Option<PathBuf>,
    /// The component to sign.
    file: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The public keys to trust (as `quota serve --trusted-keys` takes them).
    #[arg(long, value_name = "FILE")]
    trusted_keys: PathBuf,
    /// The signature; default: FILE.sig.
    #[arg(long, value_name = "SIG")]
    signature: Option<PathBuf>,
    /// The component.
    file: PathBuf,
}

/// `FILE.sig`: where a component's signature is written and looked for.
pub fn signature_path(component: &Path) -> PathBuf {
    let mut path = component.as_os_str().to_owned();
    path.push(".sig");
    PathBuf::from(path)
}

/// The signature beside `component` (`FILE.sig`), if there is one.
pub fn signature_beside(component: &Path) -> anyhow::Result<Option<String>> {
    let path = signature_path(component);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    }
}

/// Creates `path` for writing; refuses to replace an existing file.
fn create(path: &Path, mode: u32) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create `{}` (it must not exist yet)", path.display()))
}

pub fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let key = SecretKey::generate()?;
    let public = key.public_key();
    let with = |ext: &str| {
        let mut path = args.out.as_os_str().to_owned();
        path.push(ext);
        PathBuf::from(path)
    };
    let (secret_path, public_path) = (with(".key"), with(".pub"));
    if public_path.exists() {
        anyhow::bail!("`{}` exists already", public_path.display());
    }
    create(&secret_path, 0o600)?.write_all(key.to_pem()?.as_bytes())?;
    create(&public_path, 0o644)?.write_all(public.to_pem()?.as_bytes())?;
    println!("key id: {}", public.key_id());
    println!("private key: {} (keep it secret)", secret_path.display());
    println!(
        "public key: {} (give it to `quota serve --trusted-keys`)",
        public_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn sign(args: &SignArgs) -> anyhow::Result<ExitCode> {
    let pem = std::fs::read_to_string(&args.key)
        .with_context(|| format!("cannot read `{}`", args.key.display()))?;
    let key = SecretKey::from_pem(&pem)
        .with_context(|| format!("cannot use `{}` as a signing key", args.key.display()))?;
    let version = Version::parse(&args.version)
        .with_context(|| format!("`{}` is not a version (semver, e.g. 1.4.0)", args.version))?;
    let component = super::component_bytes(Some(&args.file))?;
    // A component that would be refused anyway is not worth a signature.
    super::load_bytes(&component)
        .with_context(|| format!("`{}` is not a policy component", args.file.display()))?;
    let line = quota_signing::sign(
        &key,
        &component,
        &args.name,
        &version,
        time::OffsetDateTime::now_utc(),
    )?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| signature_path(&args.file));
    std::fs::write(&out, format!("{line}\n"))
        .with_context(|| format!("cannot write `{}`", out.display()))?;
    println!(
        "signed {} version {} ({}) with key {}: {}",
        args.name,
        version,
        quota_signing::sha256_hex(&component),
        key.public_key().key_id(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `quota policy verify`: what a host with these trusted keys would say of
/// the signature; prints the manifest, exit 1 when it does not verify.
pub fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let trusted = crate::db::trusted_keys(&args.trusted_keys)?;
    let component = super::component_bytes(Some(&args.file))?;
    let path = args
        .signature
        .clone()
        .unwrap_or_else(|| signature_path(&args.file));
    let line = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    match trusted.verify(&line, &component) {
        Ok(manifest) => {
            println!("{}", serde_json::to_string_pretty(&manifest)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
