//! Admin commands that work on the configured database directly, server running or not.

use myelin_accounts::Accounts;
use myelin_core::{Config, util::random_string};
use std::sync::Arc;

/// The accounts service over the configured database, without a listener.
pub async fn accounts(config: Config) -> Result<Accounts, String> {
    let store = crate::server::open_store(&config).await?;
    Ok(Accounts::new(store, Arc::new(config)))
}

/// The password to set: the one given, or a fresh random one that is printed.
pub fn chosen_password(password: Option<String>, random: bool) -> Option<String> {
    match (password, random) {
        (Some(p), _) => Some(p),
        (None, true) => Some(random_string(20)),
        (None, false) => None,
    }
}

pub async fn user_create(
    config: Config,
    name: &str,
    password: Option<String>,
    random: bool,
    admin: bool,
) -> Result<(), String> {
    let accounts = accounts(config).await?;
    let password = chosen_password(password, random);
    let user_id = accounts.create_user(name, password.as_deref(), admin).await.map_err(|e| e.to_string())?;
    println!("created {user_id}{}", if admin { " (admin)" } else { "" });
    if random && let Some(password) = password {
        println!("password: {password}");
    }
    Ok(())
}

pub async fn user_list(config: Config) -> Result<(), String> {
    let accounts = accounts(config).await?;
    let users = accounts.list_users().await.map_err(|e| e.to_string())?;
    for user in &users {
        let mut flags = Vec::new();
        if user.is_admin {
            flags.push("admin");
        }
        if user.deactivated {
            flags.push("deactivated");
        }
        println!("{}\t{}", user.user_id, flags.join(","));
    }
    eprintln!("{} user(s)", users.len());
    Ok(())
}

fn local_user_id(accounts: &Accounts, name: &str) -> Result<ruma::OwnedUserId, String> {
    myelin_accounts::parse_local_user_id(name, &accounts.config().server_name).map_err(|e| e.to_string())
}

pub async fn user_deactivate(config: Config, name: &str) -> Result<(), String> {
    let accounts = accounts(config).await?;
    let user_id = local_user_id(&accounts, name)?;
    accounts.deactivate(&user_id).await.map_err(|e| e.to_string())?;
    println!("deactivated {user_id}");
    Ok(())
}

pub async fn user_reset_password(
    config: Config,
    name: &str,
    password: Option<String>,
    random: bool,
) -> Result<(), String> {
    let accounts = accounts(config).await?;
    let user_id = local_user_id(&accounts, name)?;
    let Some(password) = chosen_password(password, random) else {
        return Err("give --password or --random-password".into());
    };
    accounts.set_password(&user_id, &password).await.map_err(|e| e.to_string())?;
    println!("password of {user_id} reset");
    if random {
        println!("password: {password}");
    }
    Ok(())
}

/// Milliseconds since the epoch of an RFC 3339 instant given to the option `flag`.
fn instant_ms(flag: &str, text: &str) -> Result<i64, String> {
    let at = humantime::parse_rfc3339_weak(text).map_err(|e| format!("{flag}: {e} (use e.g. 2027-01-31T00:00:00Z)"))?;
    Ok(at.duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_millis() as i64)
}

fn format_ms(ms: i64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64))
        .to_string()
}

pub async fn token_create(
    config: Config,
    token: Option<String>,
    uses: Option<i64>,
    expires: Option<String>,
) -> Result<(), String> {
    let expiry_ts = expires.map(|text| instant_ms("--expires", &text)).transpose()?;
    let accounts = accounts(config).await?;
    let row = accounts.create_registration_token(token, uses, expiry_ts).await.map_err(|e| e.to_string())?;
    println!("{}", row.token);
    Ok(())
}

pub async fn token_list(config: Config) -> Result<(), String> {
    let accounts = accounts(config).await?;
    let now = myelin_core::util::now_ms();
    println!("token\tuses_allowed\tcompleted\texpires\tusable");
    for t in accounts.list_registration_tokens().await.map_err(|e| e.to_string())? {
        let expires = t.expiry_ts.map(format_ms).unwrap_or_else(|| "never".into());
        let uses = t.uses_allowed.map(|n| n.to_string()).unwrap_or_else(|| "unlimited".into());
        println!("{}\t{uses}\t{}\t{expires}\t{}", t.token, t.completed, t.is_usable(now));
    }
    Ok(())
}

pub async fn token_delete(config: Config, token: &str) -> Result<(), String> {
    let accounts = accounts(config).await?;
    if !accounts.delete_registration_token(token).await.map_err(|e| e.to_string())? {
        return Err(format!("no registration token {token}"));
    }
    println!("deleted {token}");
    Ok(())
}

/// The media service over the configured database and media directory, without a listener.
async fn media(config: Config) -> Result<myelin_media::MediaService, String> {
    let store = crate::server::open_store(&config).await?;
    let federation = myelin_federation::Federation::new(store.clone(), &config).await.map_err(|e| e.to_string())?;
    myelin_media::MediaService::new(store, Arc::new(config), federation.client).await.map_err(|e| e.to_string())
}

pub async fn keys_rotate(config: Config) -> Result<(), String> {
    let store = crate::server::open_store(&config).await?;
    let (old, new) = myelin_federation::rotate_signing_key(&store, &config).await.map_err(|e| e.to_string())?;
    println!(
        "new signing key {new}; {old} is kept as an old verify key (expired now). Restart the server at once: until then it still signs with the old key."
    );
    Ok(())
}

pub async fn media_info(config: Config, mxc: &str) -> Result<(), String> {
    let (row, thumbnails) = media(config).await?.info(mxc).await.map_err(|e| e.to_string())?;
    let field = |name: &str, value: Option<String>| println!("{name:<19}{}", value.unwrap_or_else(|| "-".into()));
    field("mxc", Some(format!("mxc://{}/{}", row.origin, row.media_id)));
    field("uploader", row.uploader.clone());
    field("content_type", row.content_type.clone());
    field("filename", row.filename.clone());
    field("size", row.size.map(|s| s.to_string()));
    field("sha256", row.sha256.clone());
    field("created", Some(format_ms(row.created_ts)));
    field("uploaded", row.uploaded_ts.map(format_ms));
    field("authenticated_only", Some(row.authenticated_only.to_string()));
    field("quarantined", Some(row.quarantined.to_string()));
    field("thumbnails", Some(thumbnails.to_string()));
    Ok(())
}

pub async fn media_quarantine(config: Config, mxc: &str, quarantined: bool) -> Result<(), String> {
    media(config).await?.set_quarantined(mxc, quarantined).await.map_err(|e| e.to_string())?;
    println!("{} {mxc}", if quarantined { "quarantined" } else { "released" });
    Ok(())
}

pub async fn media_delete(config: Config, mxc: &str) -> Result<(), String> {
    let freed = media(config).await?.delete(mxc).await.map_err(|e| e.to_string())?;
    println!("deleted {mxc} ({freed} bytes freed on disk)");
    Ok(())
}

pub async fn media_purge(config: Config, before: &str, scope: myelin_media::PurgeScope) -> Result<(), String> {
    let before_ms = instant_ms("--before", before)?;
    let (count, freed) = media(config).await?.purge(before_ms, scope).await.map_err(|e| e.to_string())?;
    println!("deleted {count} media item(s) created before {before} ({freed} bytes freed on disk)");
    Ok(())
}
