//! Start-up and graceful shutdown of a Myelin server.

use myelin_api::Services;
use myelin_core::Config;
use myelin_store::{ConnectOptions, Store};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// Opens (and migrates) the configured database, creating the data directory first.
pub async fn open_store(config: &Config) -> Result<Store, String> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("cannot create data_dir {}: {e}", config.data_dir.display()))?;
    let options = ConnectOptions {
        max_connections: config.database.max_connections,
        sqlite_full_sync: config.database.sqlite_synchronous == myelin_core::config::SqliteSynchronous::Full,
    };
    Store::connect(&config.database_url(), &options).await.map_err(|e| format!("database: {e}"))
}

/// A server listening for requests.
pub struct RunningServer {
    /// The address the client API listens on (the port is real even if 0 was configured).
    pub client_addr: SocketAddr,
    pub services: Arc<Services>,
    shutdown: oneshot::Sender<()>,
    serving: JoinHandle<std::io::Result<()>>,
    housekeeping: JoinHandle<()>,
}

/// Opens the store and starts serving; returns once the listener is bound.
pub async fn start(config: Config) -> Result<RunningServer, String> {
    // Outbound TLS (URL previews, later federation) uses ring through rustls; set it once for
    // the process. A second start in the same process finds it set already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Arc::new(config);
    let store = open_store(&config).await?;
    let services = Services::new(config.clone(), store).await.map_err(|e| e.to_string())?;
    let listener =
        TcpListener::bind(config.listen).await.map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let client_addr = listener.local_addr().map_err(|e| e.to_string())?;
    // Without TCP_NODELAY a small response written in two parts (head, then body) waits for
    // the client's delayed ACK: 40 ms on Linux for every small thumbnail or JSON answer.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream: &mut tokio::net::TcpStream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    let app = myelin_api::router(services.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let (shutdown, shutdown_rx) = oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = shutdown_rx.await;
            })
            .await
    });
    let housekeeping = tokio::spawn(housekeeping(services.clone()));
    tracing::info!(%client_addr, server_name = %config.server_name, backend = ?services.store.backend(), "Myelin is listening");
    Ok(RunningServer { client_addr, services, shutdown, serving, housekeeping })
}

impl RunningServer {
    /// Stops accepting connections, lets in-flight requests finish, then closes the database.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        self.housekeeping.abort();
        match self.serving.await {
            Ok(Err(e)) => tracing::error!("server error: {e}"),
            Err(e) => tracing::error!("server task: {e}"),
            Ok(Ok(())) => {}
        }
        self.services.store.close().await;
        tracing::info!("stopped cleanly");
    }
}

/// Periodic clean-up of expired UIA sessions and access tokens.
async fn housekeeping(services: Arc<Services>) {
    let mut interval = tokio::time::interval(Duration::from_secs(600));
    loop {
        interval.tick().await;
        if let Err(e) = services.accounts.purge_expired().await {
            tracing::warn!("housekeeping (accounts): {e}");
        }
        if let Err(e) = services.media.purge_expired_pending().await {
            tracing::warn!("housekeeping (media): {e}");
        }
    }
}

/// `myelin serve`: runs until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> Result<(), String> {
    let server = start(config).await?;
    let users = server.services.accounts.list_users().await.map_err(|e| e.to_string())?;
    if users.is_empty() {
        println!(
            "Myelin is running on http://{}. No users yet: create the first with `myelin user create NAME --random-password --admin` (or set registration.enabled = true).",
            server.client_addr
        );
    } else {
        println!("Myelin is running on http://{}.", server.client_addr);
    }
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    server.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
