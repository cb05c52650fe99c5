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
    /// The address of the federation listener (TLS), when federation is enabled.
    pub federation_addr: Option<SocketAddr>,
    pub services: Arc<Services>,
    shutdown: oneshot::Sender<()>,
    serving: JoinHandle<std::io::Result<()>>,
    federation_shutdown: Option<(oneshot::Sender<()>, JoinHandle<std::io::Result<()>>)>,
    housekeeping: JoinHandle<()>,
}

/// Opens the store and starts serving; returns once the listener is bound.
pub async fn start(config: Config) -> Result<RunningServer, String> {
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
    let (federation_addr, federation_shutdown) = if config.federation.enabled {
        let (addr, stop, task) = serve_federation(&config, services.clone()).await?;
        (Some(addr), Some((stop, task)))
    } else {
        (None, None)
    };
    let housekeeping = tokio::spawn(housekeeping(services.clone()));
    tracing::info!(%client_addr, ?federation_addr, server_name = %config.server_name, backend = ?services.store.backend(), "Myelin is listening");
    Ok(RunningServer { client_addr, federation_addr, services, shutdown, serving, federation_shutdown, housekeeping })
}

/// Binds the federation listener (TLS) and serves the Server-Server API on it.
async fn serve_federation(
    config: &Config,
    services: Arc<Services>,
) -> Result<(SocketAddr, oneshot::Sender<()>, JoinHandle<std::io::Result<()>>), String> {
    let tls = myelin_federation::tls::server_config(config).map_err(|e| e.to_string())?;
    let listen = config.federation.listen;
    let tcp = TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen} (federation): {e}"))?;
    let listener = crate::tls_listener::TlsListener::new(tcp, tls).map_err(|e| e.to_string())?;
    let addr = axum::serve::Listener::local_addr(&listener).map_err(|e| e.to_string())?;
    let app = myelin_api::federation_router(services).into_make_service();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    Ok((addr, stop, task))
}

impl RunningServer {
    /// Stops accepting connections, lets in-flight requests finish, then closes the database.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        self.housekeeping.abort();
        let mut tasks = vec![self.serving];
        if let Some((stop, task)) = self.federation_shutdown {
            let _ = stop.send(());
            tasks.push(task);
        }
        for task in tasks {
            match task.await {
                Ok(Err(e)) => tracing::error!("server error: {e}"),
                Err(e) => tracing::error!("server task: {e}"),
                Ok(Ok(())) => {}
            }
        }
        self.services.store.close().await;
        tracing::info!("stopped cleanly");
    }
}

/// Periodic clean-up: expired UIA sessions and tokens, pending uploads, stale backoffs.
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
        if let Err(e) = services.federation.client.purge_stale_backoffs().await {
            tracing::warn!("housekeeping (federation): {e}");
        }
        if let Err(e) = services.rooms.purge_old_transactions().await {
            tracing::warn!("housekeeping (federation transactions): {e}");
        }
    }
}

/// `myelin serve`: runs until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> Result<(), String> {
    let stop = shutdown_signal();
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
    stop.await;
    tracing::info!("shutting down: finishing in-flight requests");
    server.stop().await;
    Ok(())
}

/// Registers for SIGINT and SIGTERM at once, so that a signal arriving before the wait (just
/// after the start message, say) stops the server cleanly instead of killing it.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    };
    async move {
        #[cfg(unix)]
        match signals {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("cannot listen for SIGINT or SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
