//! `--dev`: secrets generated on first start and kept in the data directory,
//! so the service starts with one command and `webhook-service token --dev`
//! can mint tokens the running service accepts.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::config::{Config, SecretString, parse_key};
use crate::crypto::EncryptionKey;

/// File holding the generated development secrets.
pub const DEV_SECRETS_FILE: &str = "dev-secrets.json";

/// The one user of `--dev`: the portal link `serve --dev` prints, and the
/// commands `listen --dev` and `send --dev`, all act as this user, so what
/// one of them creates the others see.
pub const DEV_USER: &str = "00000000-0000-4000-8000-000000000001";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DevSecrets {
    jwt_secret: String,
    internal_service_secret: String,
    encryption_key: String,
}

fn random_token(bytes: usize) -> Result<String, std::io::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// Path of the development secrets file in `data_dir`.
pub fn secrets_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DEV_SECRETS_FILE)
}

fn load_or_create(data_dir: &Path) -> Result<DevSecrets, std::io::Error> {
    let path = secrets_path(data_dir);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return serde_json::from_str(&text)
            .map_err(|e| std::io::Error::other(format!("{} is not valid: {e}", path.display())));
    }
    std::fs::create_dir_all(data_dir)?;
    let secrets = DevSecrets {
        jwt_secret: random_token(32)?,
        internal_service_secret: random_token(32)?,
        encryption_key: EncryptionKey::generate()
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .to_base64(),
    };
    let text =
        serde_json::to_string_pretty(&secrets).map_err(|e| std::io::Error::other(e.to_string()))?;
    write_private(&path, &text)?;
    Ok(secrets)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> Result<(), std::io::Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> Result<(), std::io::Error> {
    std::fs::write(path, text)
}

/// Fills the secrets `--dev` may generate; returns which were generated.
pub fn fill_missing(config: &mut Config) -> Result<Vec<&'static str>, std::io::Error> {
    let needs = config.jwt.secret.is_none() && config.jwt.public_key_pem.is_none()
        || config.internal_secret.is_none()
        || config.encryption_key.is_none();
    if !needs {
        return Ok(Vec::new());
    }
    let secrets = load_or_create(&config.data_dir)?;
    let mut generated = Vec::new();
    if config.jwt.secret.is_none() && config.jwt.public_key_pem.is_none() {
        config.jwt.secret = Some(SecretString::new(secrets.jwt_secret));
        generated.push("JWT_SECRET");
    }
    if config.internal_secret.is_none() {
        config.internal_secret = Some(SecretString::new(secrets.internal_service_secret));
        generated.push("INTERNAL_SERVICE_SECRET");
    }
    if config.encryption_key.is_none() {
        let key = parse_key(&secrets.encryption_key).map_err(std::io::Error::other)?;
        config.encryption_key = Some(EncryptionKey::new(key));
        generated.push("WEBHOOK_ENCRYPTION_KEY");
    }
    Ok(generated)
}

/// The development JWT secret, for `webhook-service token --dev`.
pub fn jwt_secret(data_dir: &Path) -> Result<SecretString, std::io::Error> {
    Ok(SecretString::new(load_or_create(data_dir)?.jwt_secret))
}

/// The secrets a client command needs to talk to a `serve --dev` service.
#[derive(Debug)]
pub struct DevClientSecrets {
    /// Signs the tokens the client mints.
    pub jwt_secret: SecretString,
    /// Authenticates the client on `/internal`.
    pub internal_service_secret: SecretString,
}

/// Reads the secrets `serve --dev` generated in `data_dir`, without creating
/// them: a client finding none is pointed at a data directory no dev service uses.
pub fn read_client_secrets(data_dir: &Path) -> Result<DevClientSecrets, std::io::Error> {
    let path = secrets_path(data_dir);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot read {}: {e}; start the service with `webhook-service serve --dev` first \
                 (or set WEBHOOK_DATA_DIR to the data directory it uses)",
                path.display()
            ),
        )
    })?;
    let secrets: DevSecrets = serde_json::from_str(&text)
        .map_err(|e| std::io::Error::other(format!("{} is not valid: {e}", path.display())))?;
    Ok(DevClientSecrets {
        jwt_secret: SecretString::new(secrets.jwt_secret),
        internal_service_secret: SecretString::new(secrets.internal_service_secret),
    })
}
