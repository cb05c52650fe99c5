//! The server's ed25519 signing key: generated on first start and kept in `data_dir`, so every
//! event this server signs stays verifiable across restarts.

use myelin_core::{Error, Result, util::random_string};
use ruma::{serde::Base64, signatures::Ed25519KeyPair};
use std::{fs, io::Write, path::Path};

/// The file under `data_dir` holding the key: `ed25519 <version> <base64 PKCS#8 DER>`.
pub const SIGNING_KEY_FILE: &str = "signing.key";

pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Loads the key from `data_dir`, generating and storing one on first start.
    pub fn load_or_generate(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(SIGNING_KEY_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = Self::generate_text();
                write_private(&path, &text).map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
                tracing::info!(path = %path.display(), "generated the server's signing key");
                text
            }
            Err(e) => return Err(Error::internal(format!("{}: {e}", path.display()))),
        };
        Self::parse(&text).map_err(|e| Error::internal(format!("{}: {e}", path.display())))
    }

    fn generate_text() -> String {
        let der = Ed25519KeyPair::generate();
        format!(
            "ed25519 {} {}\n",
            random_string(6),
            Base64::<ruma::serde::base64::Standard, _>::new(der.to_vec()).encode()
        )
    }

    /// A key from a PKCS#8 DER document.
    pub fn from_der(der: &[u8], version: &str) -> std::result::Result<Self, String> {
        let pair = Ed25519KeyPair::from_der(der, version.to_owned()).map_err(|e| e.to_string())?;
        Ok(SigningKey { pair })
    }

    fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut parts = text.split_whitespace();
        let (Some("ed25519"), Some(version), Some(der), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("expected `ed25519 <version> <base64 key>`".into());
        };
        let der = Base64::<ruma::serde::base64::Standard, Vec<u8>>::parse(der).map_err(|e| e.to_string())?;
        Self::from_der(der.as_bytes(), version)
    }

    /// `myelin keys rotate`: replaces the key in `data_dir` with a new one and returns the key
    /// it replaced (to be published as an old verify key). Takes effect at the next start.
    pub fn rotate(data_dir: &Path) -> Result<SigningKey> {
        let old = Self::load_or_generate(data_dir)?;
        let path = data_dir.join(SIGNING_KEY_FILE);
        // The new version must differ from the old one: other servers cache keys by ID.
        let text = loop {
            let text = Self::generate_text();
            if Self::parse(&text).is_ok_and(|new| new.key_id() != old.key_id()) {
                break text;
            }
        };
        write_private(&path, &text).map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
        Ok(old)
    }

    pub fn pair(&self) -> &Ed25519KeyPair {
        &self.pair
    }

    /// `ed25519:<version>`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.pair.version())
    }

    /// The public key, unpadded base64 as the key APIs publish it.
    pub fn public_key_base64(&self) -> String {
        Base64::<ruma::serde::base64::Standard, _>::new(self.pair.public_key().to_vec()).encode()
    }
}

/// Writes a file only its owner can read, atomically (temp file + rename).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = SigningKey::load_or_generate(dir.path()).unwrap();
        let again = SigningKey::load_or_generate(dir.path()).unwrap();
        assert_eq!(first.key_id(), again.key_id());
        assert_eq!(first.public_key_base64(), again.public_key_base64());
        assert!(first.key_id().starts_with("ed25519:"));
        fs::write(dir.path().join(SIGNING_KEY_FILE), "garbage").unwrap();
        assert!(SigningKey::load_or_generate(dir.path()).is_err());
    }

    #[test]
    fn rotation_replaces_the_key_and_returns_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = SigningKey::load_or_generate(dir.path()).unwrap();
        let old = SigningKey::rotate(dir.path()).unwrap();
        let now = SigningKey::load_or_generate(dir.path()).unwrap();
        assert_eq!(old.key_id(), first.key_id());
        assert_ne!(now.key_id(), first.key_id());
        assert_ne!(now.public_key_base64(), first.public_key_base64());
    }
}
