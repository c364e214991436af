//! Starts and stops a private Azurite (the local Azure Storage emulator) on free ports with
//! in-memory persistence: for the tests, the benchmark and the main job. Azurite itself is
//! installed by `npm ci` from the repository's `package.json` / `package-lock.json`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::AzureConfig;

/// A running Azurite, stopped when dropped.
pub struct Azurite {
    child: Child,
    /// Blob port.
    pub blob_port: u16,
    /// Queue port.
    pub queue_port: u16,
    /// Table port.
    pub table_port: u16,
}

impl Azurite {
    /// Starts Azurite on three free loopback ports and waits until all three accept
    /// connections. Finds the binary at `$FLOWFORGE_AZURITE_BIN`, or `node_modules/.bin/azurite`
    /// in the current directory or one of its parents.
    pub fn start() -> Result<Self, String> {
        let bin = find_binary()?;
        let [blob_port, queue_port, table_port] = free_ports()?;
        // A small bash watchdog owns Azurite: it stops Azurite when told to (SIGTERM), and
        // also when this process dies without telling it (a killed test run leaves nothing).
        let watchdog = r#"azurite="$1"; shift
"$azurite" "$@" & child=$!
trap 'kill -9 $child 2>/dev/null; exit 0' TERM INT
while kill -0 "$PPID" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
kill -9 $child 2>/dev/null"#;
        let child = Command::new("bash")
            .args(["-c", watchdog, "azurite-watchdog"])
            .arg(&bin)
            .args([
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
                // Azurite collects telemetry by default; there is no network to send it to
                // here, and every request pays for it.
                "--disableTelemetry",
            ])
            .args([
                "--blobHost",
                "127.0.0.1",
                "--queueHost",
                "127.0.0.1",
                "--tableHost",
                "127.0.0.1",
            ])
            .args(["--blobPort", &blob_port.to_string()])
            .args(["--queuePort", &queue_port.to_string()])
            .args(["--tablePort", &table_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start Azurite at {}: {e}", bin.display()))?;
        let mut azurite = Self {
            child,
            blob_port,
            queue_port,
            table_port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        for port in [blob_port, queue_port, table_port] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Ok(Some(status)) = azurite.child.try_wait() {
                    return Err(format!("Azurite exited at start-up: {status}"));
                }
                if Instant::now() > deadline {
                    return Err("Azurite did not open its ports within 60 s".into());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(azurite)
    }

    /// A backend configuration for this Azurite and a task hub.
    pub fn config(&self, task_hub: &str) -> AzureConfig {
        AzureConfig::azurite_at(task_hub, self.blob_port, self.queue_port, self.table_port)
    }

    /// A connection string for this Azurite (Azurite's public well-known key), as a
    /// Functions app's `AzureWebJobsStorage` would hold it.
    pub fn connection_string(&self) -> String {
        let endpoint = |port: u16| format!("http://127.0.0.1:{port}/{}", crate::AZURITE_ACCOUNT);
        format!(
            "DefaultEndpointsProtocol=http;AccountName={};AccountKey={};BlobEndpoint={};QueueEndpoint={};TableEndpoint={}",
            crate::AZURITE_ACCOUNT,
            crate::config::AZURITE_KEY,
            endpoint(self.blob_port),
            endpoint(self.queue_port),
            endpoint(self.table_port)
        )
    }

    /// The process id of Azurite's watchdog (Azurite is its child).
    pub fn watchdog_pid(&self) -> u32 {
        self.child.id()
    }

    /// The process id of Azurite itself (the watchdog's child that is not its `sleep`),
    /// for measuring it or freezing it in tests.
    pub fn server_pid(&self) -> Option<u32> {
        let watchdog = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{watchdog}/task/{watchdog}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() != "sleep")
            })
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        // SIGTERM lets the watchdog stop Azurite (with SIGKILL: it keeps nothing, and a
        // graceful close would wait for idle keep-alive connections); SIGKILL here would
        // orphan it.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// One Azurite shared by every test of a test binary, started on first use. Its watchdog
/// stops it when the test process exits.
pub fn shared() -> &'static Azurite {
    static SHARED: std::sync::OnceLock<Azurite> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| match Azurite::start() {
        Ok(azurite) => azurite,
        Err(reason) => {
            eprintln!("cannot start Azurite: {reason}");
            std::process::exit(2)
        }
    })
}

fn find_binary() -> Result<PathBuf, String> {
    if let Ok(bin) = std::env::var("FLOWFORGE_AZURITE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let start = std::env::current_dir().map_err(|e| e.to_string())?;
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for base in [start.as_path(), manifest.as_path()] {
        let mut dir: Option<&Path> = Some(base);
        while let Some(d) = dir {
            let candidate = d.join("node_modules/.bin/azurite");
            if candidate.exists() {
                return Ok(candidate);
            }
            dir = d.parent();
        }
    }
    Err("Azurite is not installed: run `npm ci` at the repository root".into())
}

fn free_ports() -> Result<[u16; 3], String> {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("no free port: {e}"))?;
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    Ok([ports[0], ports[1], ports[2]])
}
