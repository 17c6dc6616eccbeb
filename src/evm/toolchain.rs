//! Finding the EVM tools: solc (native, or the project's pinned solc-js behind `tools/solc`) and
//! anvil (npm's `@foundry-rs/anvil`), installing the pinned toolchain with `npm install` on first use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The folder holding `package.json` and `tools/solc`: `$ZKINFER_TOOLCHAIN_DIR`, else the
/// source tree this binary was built from.
pub fn toolchain_dir() -> PathBuf {
    std::env::var_os("ZKINFER_TOOLCHAIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Looks a program up on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

fn npm_platform() -> &'static str {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "aarch64") => "linux-arm64",
        ("macos", "x86_64") => "darwin-amd64",
        ("macos", "aarch64") => "darwin-arm64",
        _ => "linux-amd64",
    }
}

/// The native binary npm's `@foundry-rs/<tool>` package installed, if any.
fn npm_foundry_binary(dir: &Path, tool: &str) -> PathBuf {
    dir.join("node_modules").join("@foundry-rs").join(format!("{tool}-{}", npm_platform())).join("bin").join(tool)
}

fn npm_toolchain_installed(dir: &Path) -> bool {
    dir.join("node_modules/solc/package.json").is_file() && is_executable(&npm_foundry_binary(dir, "anvil"))
}

/// Installs the pinned toolchain (`npm install`) in `dir` unless it is there. Concurrent callers wait
/// for the one that installs. Set `ZKINFER_NO_INSTALL=1` to forbid installing.
pub fn ensure_npm_toolchain(dir: &Path) -> Result<()> {
    if npm_toolchain_installed(dir) {
        return Ok(());
    }
    let hint = format!("run `npm install` in {} (needs Node.js and npm)", dir.display());
    if std::env::var_os("ZKINFER_NO_INSTALL").is_some() {
        return Err(Error::ToolMissing { tool: "the pinned EVM toolchain (solc-js, anvil)", hint });
    }
    if !dir.join("package-lock.json").is_file() {
        return Err(Error::ToolMissing {
            tool: "the pinned EVM toolchain (solc-js, anvil)",
            hint: format!(
                "{} has no package-lock.json; set ZKINFER_TOOLCHAIN_DIR to a zkinfer checkout",
                dir.display()
            ),
        });
    }
    let npm = find_on_path("npm").ok_or_else(|| Error::ToolMissing {
        tool: "npm",
        hint: "install Node.js (with npm) to get the pinned solc-js and anvil, or put native solc and anvil on PATH"
            .into(),
    })?;
    let lock = dir.join(".zkinfer-npm-install.lock");
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&lock) {
            Ok(mut file) => {
                // Who holds the lock, so that a lock left by a killed install can be told apart.
                let _ = std::io::Write::write_all(&mut file, std::process::id().to_string().as_bytes());
                break;
            }
            Err(_) if lock_is_stale(&lock) => {
                eprintln!("zkinfer: removing {}, left by an install that no longer runs", lock.display());
                let _ = std::fs::remove_file(&lock);
            }
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(500));
                if npm_toolchain_installed(dir) {
                    return Ok(());
                }
            }
            Err(e) => return Err(Error::io("create", &lock, e)),
        }
    }
    let result = (|| {
        if npm_toolchain_installed(dir) {
            return Ok(());
        }
        eprintln!("zkinfer: installing the pinned EVM toolchain (npm install in {}) ...", dir.display());
        let status = Command::new(npm)
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| Error::ToolMissing { tool: "npm", hint: format!("cannot run npm: {e}") })?;
        if !status.success() || !npm_toolchain_installed(dir) {
            return Err(Error::ToolMissing {
                tool: "the pinned EVM toolchain (solc-js, anvil)",
                hint: format!("`npm install` failed ({status}); {hint}"),
            });
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&lock);
    result
}

/// A lock whose holder is gone: its process id names no running process (Linux's /proc), or
/// it names none and is older than an install takes (10 minutes).
fn lock_is_stale(lock: &Path) -> bool {
    let holder = std::fs::read_to_string(lock).ok().and_then(|s| s.trim().parse::<u32>().ok());
    match holder {
        Some(pid) if Path::new("/proc/self").exists() => !Path::new(&format!("/proc/{pid}")).exists(),
        _ => std::fs::metadata(lock)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600)),
    }
}

fn explicit_tool(tool: &'static str, path: PathBuf, hint: &str) -> Result<PathBuf> {
    if is_executable(&path) {
        Ok(path)
    } else {
        Err(Error::ToolMissing { tool, hint: format!("{} is not an executable file; {hint}", path.display()) })
    }
}

/// Resolves solc: `explicit` (`--solc`), else `$SOLC`, else `solc` on PATH, else the pinned
/// solc-js behind `tools/solc` (installed on first use).
pub fn resolve_solc(explicit: Option<&Path>) -> Result<PathBuf> {
    let hint = "install solc 0.8.19 or later (e.g. `npm install` in the zkinfer checkout for the pinned solc-js) or pass --solc PATH";
    if let Some(path) = explicit.map(Path::to_path_buf).or_else(|| std::env::var_os("SOLC").map(PathBuf::from)) {
        return explicit_tool("solc", path, hint);
    }
    if let Some(native) = find_on_path("solc") {
        return Ok(native);
    }
    let dir = toolchain_dir();
    ensure_npm_toolchain(&dir)?;
    explicit_tool("solc", dir.join("tools").join("solc"), hint)
}

/// Resolves anvil: `$ANVIL`, else npm's native binary in the toolchain folder, else `anvil` on
/// PATH, else installs the pinned toolchain.
pub fn resolve_anvil() -> Result<PathBuf> {
    resolve_foundry_tool("anvil", "ANVIL")
}

/// forge: `$FORGE`, else npm's `@foundry-rs/forge` native binary, else `forge` on PATH, else
/// the npm toolchain installed now.
pub fn resolve_forge() -> Result<PathBuf> {
    resolve_foundry_tool("forge", "FORGE")
}

fn resolve_foundry_tool(tool: &'static str, env_var: &str) -> Result<PathBuf> {
    let hint = format!(
        "run `npm install` in the zkinfer checkout (npm package @foundry-rs/{tool}), or put {tool} on PATH, or set {env_var}"
    );
    if let Some(path) = std::env::var_os(env_var) {
        return explicit_tool(tool, PathBuf::from(path), &hint);
    }
    let dir = toolchain_dir();
    let npm_binary = npm_foundry_binary(&dir, tool);
    if is_executable(&npm_binary) {
        return Ok(npm_binary);
    }
    if let Some(native) = find_on_path(tool) {
        return Ok(native);
    }
    ensure_npm_toolchain(&dir)?;
    explicit_tool(tool, npm_binary, &hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_left_by_a_dead_install_is_stale_and_a_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("lock");
        std::fs::write(&lock, std::process::id().to_string()).unwrap();
        assert!(!lock_is_stale(&lock), "this process holds it");
        // A process id above the kernel's maximum (4,194,304) names no process.
        std::fs::write(&lock, "4194305").unwrap();
        assert!(lock_is_stale(&lock));
        std::fs::write(&lock, "").unwrap();
        assert!(!lock_is_stale(&lock), "a fresh lock without a holder is waited for");
    }
}
