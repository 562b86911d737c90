//! A fresh PostgreSQL database per test, dropped afterwards.
//!
//! The server is the one at `WEBHOOK_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, trust authentication). When
//! it cannot be reached, tests are skipped (listed as ignored with the
//! reason by the binaries on `harness`), unless `WEBHOOK_REQUIRE_POSTGRES=1`
//! (set by `.ci/run`), where they fail.
#![allow(dead_code)]

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_postgres::NoTls;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server tests use (a URL of its maintenance database).
pub fn base_url() -> String {
    std::env::var("WEBHOOK_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_string())
}

fn required() -> bool {
    std::env::var("WEBHOOK_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

fn host_port(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .map(|u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or("127.0.0.1"),
                u.port().unwrap_or(5432)
            )
        })
        .unwrap_or_else(|| url.to_string())
}

/// `base` with its database replaced by `name`.
fn with_database(base: &str, name: &str) -> String {
    match url::Url::parse(base) {
        Ok(mut u) => {
            u.set_path(&format!("/{name}"));
            u.to_string()
        }
        Err(_) => format!("{base} dbname={name}"),
    }
}

/// Connects to `url`; the connection runs on a task of the current runtime.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let connecting = tokio_postgres::connect(url, NoTls);
    match tokio::time::timeout(Duration::from_secs(5), connecting).await {
        Ok(Ok((client, connection))) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(client)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

/// A database created for one test; dropped (with its connections) when this is dropped.
pub struct TestDatabase {
    /// URL of the new database.
    pub url: String,
    /// Its name.
    pub name: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates a fresh database, or says why there is none (PostgreSQL not
    /// reachable, and not required).
    pub async fn fresh() -> Result<TestDatabase, String> {
        let admin_url = base_url();
        let admin = match connect(&admin_url).await {
            Ok(client) => client,
            Err(e) => {
                let place = host_port(&admin_url);
                if required() {
                    panic!(
                        "PostgreSQL not reachable on {place} ({e}) and WEBHOOK_REQUIRE_POSTGRES=1"
                    );
                }
                return Err(format!("PostgreSQL not reachable on {place}"));
            }
        };
        let name = format!(
            "webhook_test_{}_{:016x}",
            std::process::id(),
            fastrand::u64(..)
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        Ok(TestDatabase {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime (or while unwinding), where
        // blocking on it is not allowed: drop the database from a thread of its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = connect(&admin_url).await.ok()?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            let _ = writeln!(
                std::io::stderr(),
                "warning: could not drop test database {}",
                self.name
            );
        }
    }
}

/// A TCP proxy in front of PostgreSQL that a test can cut and restore, to
/// show what happens while the database is unreachable without stopping the
/// shared server. While cut, open connections are closed and new ones are
/// accepted and closed at once.
pub struct CuttableProxy {
    addr: std::net::SocketAddr,
    up: std::sync::Arc<AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    /// Starts a proxy on an ephemeral loopback port forwarding to the test server.
    pub async fn start() -> CuttableProxy {
        let upstream = host_port(&base_url());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let up = std::sync::Arc::new(AtomicBool::new(true));
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = {
            let (up, links) = (up.clone(), links.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees the connection closed
                    }
                    let upstream = upstream.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    if let Ok(mut links) = links.lock() {
                        links.retain(|l: &tokio::task::JoinHandle<()>| !l.is_finished());
                        links.push(link);
                    }
                }
            })
        };
        CuttableProxy {
            addr,
            up,
            links,
            accept,
        }
    }

    /// The URL of `db` through this proxy.
    pub fn url_for(&self, db: &TestDatabase) -> String {
        let mut url = url::Url::parse(&db.url).expect("test database URL");
        url.set_host(Some("127.0.0.1")).expect("host");
        url.set_port(Some(self.addr.port())).expect("port");
        url.to_string()
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        if let Ok(mut links) = self.links.lock() {
            for link in links.drain(..) {
                link.abort();
            }
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
