//! The service under test: the real `webhook-service` binary as a child process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Shared secret used by the benchmark's producer.
pub const INTERNAL_SECRET: &str = "bench-internal-secret-0123456789";
pub(crate) const JWT_SECRET: &str = "bench-jwt-secret-0123456789abcdef";
const ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Where the service binary is: `--service-bin`, else next to this executable, else built with cargo.
pub fn locate_binary(explicit: Option<&Path>, release: bool) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/webhook-bench or target/<profile>/deps/<test binary>
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let candidate = dir.join("webhook-service");
    if candidate.exists() {
        return Ok(candidate);
    }
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "-p", "webhook-service", "--bin", "webhook-service"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .context("cannot run cargo to build webhook-service")?;
    if !status.success() || !candidate.exists() {
        bail!("webhook-service is not built and `cargo build` failed; pass --service-bin");
    }
    Ok(candidate)
}

/// Spawns `binary serve` with exactly `env` and waits for its
/// "listening on" line: the child, its base URL and how long it took to
/// start (spawn to that line, which it prints once its store is open and
/// its webhooks are loaded).
fn spawn(binary: &Path, env: &[(String, String)]) -> anyhow::Result<(Child, String, Duration)> {
    let spawned_at = Instant::now();
    let mut child = Command::new(binary)
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("webhook-service listening on ") {
                let _ = tx.send((url.to_string(), Instant::now()));
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok((base, listening_at)) => Ok((child, base, listening_at - spawned_at)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the service did not start within 60 s");
        }
    }
}

/// A running service and its data directory.
pub struct Service {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// From spawning the process to its "listening on" line.
    pub started_in: Duration,
    binary: PathBuf,
    env: Vec<(String, String)>,
    _data: Option<tempfile::TempDir>,
    /// The PostgreSQL server's CPU seconds when the service had started
    /// (with `--database-url` only).
    postgres_cpu_at_start: Option<f64>,
    /// The harness's own CPU seconds when the service had started.
    harness_cpu_at_start: f64,
}

impl Service {
    /// Starts the binary with the benchmark's environment plus `extra`.
    pub fn start(
        binary: &Path,
        database_url: Option<&str>,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Service> {
        let data = tempfile::tempdir()?;
        let mut env: Vec<(String, String)> = [
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("JWT_SECRET", JWT_SECRET),
            ("INTERNAL_SERVICE_SECRET", INTERNAL_SECRET),
            ("WEBHOOK_ENCRYPTION_KEY", ENCRYPTION_KEY),
            ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8,::1/128"),
            ("LOG_LEVEL", "warn"),
            ("LOG_FORMAT", "json"),
            ("RATE_LIMIT_MAX_REQUESTS", "0"),
            ("INTERNAL_RATE_LIMIT_MAX_REQUESTS", "0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // Tuning knobs of the runtime pass through, so a variant can be measured
        // without a rebuild (`TOKIO_WORKER_THREADS=1 webhook-bench throughput`).
        env.extend(std::env::vars().filter(|(k, _)| k.starts_with("TOKIO_")));
        env.push(("WEBHOOK_DATA_DIR".into(), data.path().display().to_string()));
        if let Some(url) = database_url {
            env.push(("DATABASE_URL".into(), url.to_string()));
        }
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.clone()));
        }
        let (child, base, started_in) = spawn(binary, &env)?;
        Ok(Service {
            child,
            base,
            started_in,
            binary: binary.to_path_buf(),
            env,
            _data: Some(data),
            postgres_cpu_at_start: database_url
                .and_then(|_| crate::machine::cpu_seconds_of("postgres")),
            harness_cpu_at_start: crate::machine::own_cpu_seconds(),
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process and starts it again on the same store (the same
    /// data directory or database, a new port); `started_in` is then the
    /// start-up on that store.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let (child, base, started_in) = spawn(&self.binary, &self.env)?;
        self.child = child;
        self.base = base;
        self.started_in = started_in;
        Ok(())
    }

    /// SIGKILL: the process ends at once, holding whatever it had claimed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM first: a graceful stop lets a profiler wrapped around the
    /// service (valgrind, perf) write its report. SIGKILL if it lingers.
    pub fn stop(&mut self) {
        if !self.alive() {
            return;
        }
        let terminated = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if terminated {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if !self.alive() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.kill();
    }

    /// Resident set size now (VmRSS), in MB.
    pub fn rss_mb(&self) -> f64 {
        self.status_mb("VmRSS:")
    }

    /// Peak resident set size so far (VmHWM), in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        self.status_mb("VmHWM:")
    }

    /// A `/proc/<pid>/status` field given in kB, in MB (0 when unreadable).
    fn status_mb(&self, field: &str) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    }

    /// CPU time (user + system) the service has used so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        crate::machine::process_cpu_seconds(self.pid()).unwrap_or(0.0)
    }

    /// CPU time the PostgreSQL server (every `postgres` process of this
    /// machine) has used since the service started, in seconds; `None` on
    /// the embedded store.
    pub fn postgres_cpu_seconds(&self) -> Option<f64> {
        let start = self.postgres_cpu_at_start?;
        Some(crate::machine::cpu_seconds_of("postgres")? - start)
    }

    /// CPU time this harness process (receivers, producers, the scenario's
    /// set-up) has used since the service started, in seconds; a restart
    /// does not reset it.
    pub fn harness_cpu_seconds(&self) -> f64 {
        crate::machine::own_cpu_seconds() - self.harness_cpu_at_start
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A user token signed here with the service's `JWT_SECRET`, shaped as
    /// the service's own CLI mints it: for thousands of users, where a
    /// process per token (see [`Service::token`]) would take minutes.
    pub fn mint_token(user: &str, admin: bool) -> anyhow::Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let roles: &[&str] = if admin { &["user", "admin"] } else { &["user"] };
        let claims = serde_json::json!({
            "userId": user,
            "roles": roles,
            "iat": now,
            "exp": now + 24 * 3600,
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .context("cannot sign a token")
    }

    /// A user token minted by the service's own CLI.
    pub fn token(&self, user: &str, admin: bool) -> anyhow::Result<String> {
        let mut cmd = Command::new(&self.binary);
        cmd.args(["token", "--user", user])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if admin {
            cmd.arg("--admin");
        }
        let out = cmd.output()?;
        if !out.status.success() {
            bail!("token: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}
