//! Finding the EVM tools: solc (native, or the pinned solc-js behind the `solc` adapter) and
//! anvil and forge (npm's `@foundry-rs/anvil` and `@foundry-rs/forge`), installing the pinned
//! toolchain with `npm install` on first use into a per-user cache. The toolchain's
//! `package.json`, `package-lock.json` and the solc adapter are compiled into the binary, so an
//! installed zkinfer needs no source checkout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::error::EvmError;
use crate::error::{Error, Result};

/// The pinned toolchain's files, as the binary carries them.
const TOOLCHAIN_FILES: [(&str, &str); 3] = [
    ("package.json", include_str!("../../package.json")),
    ("package-lock.json", include_str!("../../package-lock.json")),
    ("tools/solc", include_str!("../../tools/solc")),
];

/// Written after a successful install: the digest of the lock it installed.
const INSTALLED_STAMP: &str = ".zkinfer-installed";

/// The per-user cache zkinfer keeps its toolchain (and development SRS) in:
/// `$XDG_CACHE_HOME/zkinfer`, else `~/.cache/zkinfer`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("zkinfer")
}

/// The folder holding the toolchain (`package.json`, `tools/solc`, `node_modules`):
/// `$ZKINFER_TOOLCHAIN_DIR` (used as it is), else `toolchain` in the per-user cache.
pub fn toolchain_dir() -> PathBuf {
    std::env::var_os("ZKINFER_TOOLCHAIN_DIR").map(PathBuf::from).unwrap_or_else(|| cache_dir().join("toolchain"))
}

/// The digest of the pinned lock file, as the install stamp records it.
fn lock_digest() -> String {
    hex::encode(Sha256::digest(TOOLCHAIN_FILES[1].1.as_bytes()))
}

/// Writes the pinned toolchain's files into `dir` where they are missing or differ (a newer
/// zkinfer).
fn write_toolchain_files(dir: &Path) -> Result<()> {
    for (name, text) in TOOLCHAIN_FILES {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("create", parent, e))?;
        }
        // Written beside and renamed: a concurrent reader never sees half a file.
        let partial = path.with_extension(format!("partial-{}", std::process::id()));
        std::fs::write(&partial, text).map_err(|e| Error::io("write", &partial, e))?;
        if name == "tools/solc" {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| Error::io("make executable", &partial, e))?;
        }
        std::fs::rename(&partial, &path).map_err(|e| Error::io("write", &path, e))?;
    }
    Ok(())
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
    let present = dir.join("node_modules/solc/package.json").is_file()
        && is_executable(&npm_foundry_binary(dir, "anvil"))
        && is_executable(&npm_foundry_binary(dir, "forge"));
    // In the cache, the install must be of this binary's lock; a folder the user names is taken
    // as installed when the tools are there.
    present
        && (std::env::var_os("ZKINFER_TOOLCHAIN_DIR").is_some()
            || std::fs::read_to_string(dir.join(INSTALLED_STAMP)).is_ok_and(|d| d.trim() == lock_digest()))
}

/// Installs the pinned toolchain (`npm install`) in `dir` unless it is there. Concurrent callers wait
/// for the one that installs. Set `ZKINFER_NO_INSTALL=1` to forbid installing.
pub fn ensure_npm_toolchain(dir: &Path) -> Result<()> {
    if npm_toolchain_installed(dir) {
        return Ok(());
    }
    // A folder named by `$ZKINFER_TOOLCHAIN_DIR` is left as it is.
    if std::env::var_os("ZKINFER_TOOLCHAIN_DIR").is_none() {
        write_toolchain_files(dir)?;
    }
    let hint = format!("run `zkinfer toolchain` or `npm install` in {} (needs Node.js and npm)", dir.display());
    if std::env::var_os("ZKINFER_NO_INSTALL").is_some() {
        return Err(EvmError::ToolMissing { tool: "the pinned EVM toolchain (solc-js, anvil)", hint }.into());
    }
    if !dir.join("package-lock.json").is_file() {
        return Err(EvmError::ToolMissing {
            tool: "the pinned EVM toolchain (solc-js, anvil)",
            hint: format!(
                "{} has no package-lock.json; set ZKINFER_TOOLCHAIN_DIR to a zkinfer checkout, or unset it to use the per-user cache",
                dir.display()
            ),
        }.into());
    }
    let npm = find_on_path("npm").ok_or_else(|| EvmError::ToolMissing {
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
            .map_err(|e| EvmError::ToolMissing { tool: "npm", hint: format!("cannot run npm: {e}") })?;
        let stamp = dir.join(INSTALLED_STAMP);
        if status.success() {
            std::fs::write(&stamp, lock_digest()).map_err(|e| Error::io("write", &stamp, e))?;
        }
        if !status.success() || !npm_toolchain_installed(dir) {
            return Err(EvmError::ToolMissing {
                tool: "the pinned EVM toolchain (solc-js, anvil)",
                hint: format!("`npm install` failed ({status}); {hint}"),
            }
            .into());
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
        Err(EvmError::ToolMissing { tool, hint: format!("{} is not an executable file; {hint}", path.display()) }
            .into())
    }
}

/// Resolves solc: `explicit` (`--solc`), else `$SOLC`, else `solc` on PATH, else the pinned
/// solc-js behind `tools/solc` (installed on first use).
pub fn resolve_solc(explicit: Option<&Path>) -> Result<PathBuf> {
    let hint = "install solc 0.8.19 or later (or run `zkinfer toolchain` for the pinned solc-js) or pass --solc PATH";
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
    let hint =
        format!("run `zkinfer toolchain` (npm package @foundry-rs/{tool}), or put {tool} on PATH, or set {env_var}");
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
    fn the_cache_gets_the_pinned_files_and_a_changed_one_is_rewritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_toolchain_files(dir.path()).unwrap();
        for (name, text) in TOOLCHAIN_FILES {
            assert_eq!(std::fs::read_to_string(dir.path().join(name)).unwrap(), text, "{name}");
        }
        let adapter = dir.path().join("tools/solc");
        assert!(std::fs::metadata(&adapter).unwrap().permissions().mode() & 0o111 != 0, "the adapter runs");
        std::fs::write(dir.path().join("package-lock.json"), "{}").unwrap();
        write_toolchain_files(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("package-lock.json")).unwrap(), TOOLCHAIN_FILES[1].1);
        assert!(!npm_toolchain_installed(dir.path()), "nothing is installed yet");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("partial"))
            .collect();
        assert!(leftovers.is_empty());
    }

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
