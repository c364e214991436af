//! Real processes for the crash and chaos tests: `test-worker` processes killed with
//! SIGKILL, Azurite frozen with SIGSTOP, and a small seeded generator for when to do it.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use flowforge_azure::azurite::Azurite;

/// A worker process, killed (SIGKILL) when dropped, so a failing test leaves none behind.
pub struct WorkerProcess(Child);

impl WorkerProcess {
    /// Starts `binary` (the `test-worker`) on `hub` of `azurite`; its stderr goes to `log`
    /// (appended) or is inherited.
    pub fn spawn(
        binary: &str,
        azurite: &Azurite,
        hub: &str,
        log: Option<&Path>,
    ) -> Result<Self, String> {
        let stderr = match log {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::inherit()),
            None => Stdio::inherit(),
        };
        let child = Command::new(binary)
            .env(
                "FLOWFORGE_TEST_PORTS",
                format!(
                    "{},{},{}",
                    azurite.blob_port, azurite.queue_port, azurite.table_port
                ),
            )
            .env("FLOWFORGE_TEST_HUB", hub)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn();
        child
            .map(Self)
            .map_err(|error| format!("test-worker {binary} does not start: {error}"))
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Azurite frozen with SIGSTOP (it accepts connections and answers nothing) until thawed or
/// dropped.
pub struct Frozen(u32);

impl Frozen {
    /// Freezes the Azurite process (the watchdog's child).
    pub fn azurite(azurite: &Azurite) -> Result<Self, String> {
        let pid = azurite
            .server_pid()
            .ok_or("cannot find Azurite's process")?;
        signal(pid, "-STOP")?;
        Ok(Self(pid))
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = signal(self.0, "-CONT");
    }
}

fn signal(pid: u32, which: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill {which} {pid} failed"))
    }
}

/// A small deterministic generator (a linear congruential one), so a run can be repeated
/// from its printed seed.
pub struct Lcg(pub u64);

impl Lcg {
    /// A number below `below`.
    pub fn below(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}
