//! Password hashing with argon2 (PHC strings), on a blocking thread because it is slow by design.

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use myelin_core::{Error, Result};

pub async fn hash(password: &str) -> Result<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        // Argon2id v19 with the crate's default cost and a random salt from the OS.
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| Error::internal(format!("hashing a password: {e}")))
    })
    .await
    .map_err(Error::internal)?
}

/// Whether `password` matches the stored PHC hash. A corrupt hash never matches.
pub async fn verify(password: &str, stored_hash: &str) -> Result<bool> {
    let password = password.to_owned();
    let stored_hash = stored_hash.to_owned();
    tokio::task::spawn_blocking(move || match PasswordHash::new(&stored_hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(e) => {
            tracing::error!("stored password hash cannot be parsed: {e}");
            false
        }
    })
    .await
    .map_err(Error::internal)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn hash_then_verify() {
        let hash = super::hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2"));
        assert!(super::verify("correct horse", &hash).await.unwrap());
        assert!(!super::verify("wrong", &hash).await.unwrap());
        assert!(!super::verify("x", "not a hash").await.unwrap());
    }
}
