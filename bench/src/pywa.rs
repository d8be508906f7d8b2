//! pywa, the Python library most used for WhatsApp Flows endpoints, serving the same
//! encrypted sign-up step (`bench/pywa/app.py`) on FastAPI under uvicorn with two
//! worker processes. Installed from PyPI into a virtualenv on first use.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::cert::Cert;
use crate::servers::{MetaKeys, Server, free_addr};

/// The pywa release measured.
pub const VERSION: &str = "4.5.0";

/// uvicorn worker processes (pywa's documented deployment is uvicorn's).
pub const WORKERS: u32 = 2;

/// Makes sure `venv` holds pywa [`VERSION`] with FastAPI and uvicorn, installing them
/// with `python3 -m venv` and `pip` when it does not.
pub fn ensure_venv(venv: &Path) -> anyhow::Result<()> {
    let python = venv.join("bin/python");
    let installed = Command::new(&python)
        .args([
            "-c",
            "import fastapi, uvicorn, cryptography, pywa; print(pywa.__version__)",
        ])
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == VERSION.as_bytes());
    if installed {
        return Ok(());
    }
    eprintln!("installing pywa {VERSION} into {} …", venv.display());
    run(Command::new("python3").arg("-m").arg("venv").arg(venv))?;
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        // fastapi[standard] brings uvicorn[standard] (uvloop, httptools).
        &format!("pywa[fastapi,cryptography]=={VERSION}"),
    ]))
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// Starts uvicorn with `app_dir/app.py` on a free port over TLS with `cert`.
pub fn start(
    venv: &Path,
    app_dir: &Path,
    cert: &Cert,
    keys: &MetaKeys,
    dir: &Path,
) -> anyhow::Result<Server> {
    let addr = free_addr()?;
    let uvicorn: PathBuf = venv.join("bin/uvicorn");
    let mut command = Command::new(uvicorn);
    command
        .arg("app:app")
        .arg("--app-dir")
        .arg(app_dir)
        .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(["--workers", &WORKERS.to_string()])
        .arg("--ssl-certfile")
        .arg(&cert.cert_file)
        .arg("--ssl-keyfile")
        .arg(&cert.key_file)
        .args(["--no-access-log", "--log-level", "warning"])
        .env("BENCH_PRIVATE_KEY_FILE", &keys.private_key_file)
        .env("BENCH_APP_SECRET", &keys.app_secret);
    Server::spawn("pywa", addr, command, dir)
}
