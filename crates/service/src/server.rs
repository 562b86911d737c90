//! Assembles the service from its configuration and runs it until a signal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use webhook_domain::address::AddressPolicy;
use webhook_outbound::{ConnectionLimits, OutboundClient, OutboundConfig};

use crate::api::{self, AppContext, AppState};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::crypto::SecretCipher;
use crate::engine::routing::RoutingTable;
use crate::engine::{self, Engine};
use crate::http::HttpLimits;
use crate::metrics::Metrics;
use crate::ratelimit::{FailureLimiter, RateLimiter};
use crate::store::Store;
use crate::store::postgres::{PostgresOptions, PostgresStore};
use crate::store::sqlite::SqliteStore;

/// Opens the configured store: PostgreSQL when `DATABASE_URL` names it, else
/// the embedded store in `WEBHOOK_DATA_DIR`. Either way migrations are applied.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let key = config
        .encryption_key
        .as_ref()
        .context("WEBHOOK_ENCRYPTION_KEY is not set")?;
    if let Some(url) = &config.database_url {
        let options = PostgresOptions {
            pool_size: config.database_pool_size,
            ..PostgresOptions::default()
        };
        let store = PostgresStore::connect(url.expose(), options, SecretCipher::new(key))
            .await
            .context("cannot open the PostgreSQL store named by DATABASE_URL")?;
        return Ok(Arc::new(store));
    }
    let store = SqliteStore::open(&config.data_dir, SecretCipher::new(key)).with_context(|| {
        format!(
            "cannot open the embedded store in {}",
            config.data_dir.display()
        )
    })?;
    Ok(Arc::new(store))
}

/// Runs the service until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let store = open_store(&config).await?;
    let metrics = Arc::new(Metrics::default());
    let policy = Arc::new(AddressPolicy::new(config.allowed_cidrs.clone(), config.dev));
    let mut auth = Authenticator::new(&config.jwt, config.internal_secret.clone())?;
    if let Some(key) = &config.encryption_key {
        auth = auth.with_portal_key(&crate::portal::link::signing_key(key));
    }
    let auth = Arc::new(auth);
    let routes = Arc::new(RoutingTable::default());
    routes
        .reload(store.as_ref())
        .await
        .context("cannot load webhooks")?;
    let client = OutboundClient::new(OutboundConfig {
        timeout: config.delivery.timeout,
        max_response_body: config.delivery.max_response_body,
        user_agent: engine::user_agent(),
        policy: policy.clone(),
        pool_idle_per_host: 256,
        pool_idle_timeout: Duration::from_secs(90),
        tls: config.egress.tls.clone(),
        proxy: config.egress.proxy.clone(),
        // As many idle as may be open: an idle connection is closed anyway
        // when a new one needs its slot.
        limits: ConnectionLimits {
            max_open: config.egress.max_connections,
            max_idle: config.egress.max_connections,
            ..ConnectionLimits::default()
        },
    })
    .context("cannot build the HTTP client")?;
    let engine = Engine::start(
        store.clone(),
        routes,
        client,
        config.delivery.clone(),
        config.log_retention,
        metrics.clone(),
    )
    .await
    .context("cannot start the delivery engine")?;

    let state = AppState::new(AppContext {
        config: config.clone(),
        store,
        engine: engine.clone(),
        auth,
        metrics,
        policy,
        api_limiter: Arc::new(RateLimiter::new(config.api_rate_limit)),
        internal_limiter: Arc::new(RateLimiter::new(config.internal_rate_limit)),
        auth_failures: Arc::new(FailureLimiter::new(config.auth_failure_limit)),
    });
    let app = api::App::new(state, config.request_timeout);

    let listener = TcpListener::bind((config.host, config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find an ephemeral port.
    println!("webhook-service listening on http://{addr}");
    if config.dev {
        // A ready link for a new user: open it and everything is there.
        let link = crate::portal::cli::link_for(
            &config,
            addr,
            crate::portal::cli::DEV_USER,
            false,
            false,
            Duration::from_secs(24 * 3600),
        );
        match link {
            Ok(url) => eprintln!(
                "--dev: open the portal as '{}': {url}",
                crate::portal::cli::DEV_USER
            ),
            Err(e) => eprintln!("--dev: no portal link: {e}"),
        }
    }
    tracing::info!(%addr, dev = config.dev, "webhook-service started");

    let limits = HttpLimits {
        // Reading the head is part of reading the request.
        header_read_timeout: config.request_timeout,
        // A request already running gets its whole timeout to finish.
        shutdown_grace: config.request_timeout + Duration::from_secs(1),
    };
    crate::http::serve(listener, app, limits, shutdown_signal()).await;
    tracing::info!("HTTP server stopped; finishing in-flight deliveries");
    engine
        .shutdown(config.delivery.timeout.min(Duration::from_secs(15)) + Duration::from_secs(1))
        .await;
    tracing::info!("webhook-service stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
