// The Node.js test control app (this directory): installed with npm into target/ on first use,
// then run with node. Shared by the signaling crate's webhook tests and `tests/serve.rs`, which
// include this file with `#[path]` and pass the app's directory. Tests skip, with the reason
// printed, only when node or npm is absent.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

fn install_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("webhook-app")
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

static INSTALL: Mutex<()> = Mutex::new(());

/// `NODE_PATH` for the dependencies of the app in `app`, installing them first (`npm ci` from
/// the committed lock file); None (with the reason printed) when node or npm is not installed
pub fn node_modules(app: &Path) -> Option<PathBuf> {
    for tool in ["node", "npm"] {
        if !have(tool) {
            eprintln!("SKIPPED: `{tool}` is not installed (apt-get install nodejs npm)");
            return None;
        }
    }
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = install_dir();
    let lock = std::fs::read(app.join("package-lock.json")).unwrap();
    let installed_lock = dir.join("package-lock.json");
    let up_to_date = dir.join("node_modules/.package-lock.json").exists()
        && std::fs::read(&installed_lock).is_ok_and(|l| l == lock);
    if !up_to_date {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(app.join("package.json"), dir.join("package.json")).unwrap();
        std::fs::write(&installed_lock, &lock).unwrap();
        let out = Command::new("npm")
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .expect("run npm ci");
        assert!(
            out.status.success(),
            "npm ci in {} failed: {}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some(dir.join("node_modules"))
}

/// The webhook app running as a child process; killed when dropped, even on test failure
pub struct NodeApp {
    child: Child,
    /// Where it listens.
    pub port: u16,
}

impl NodeApp {
    /// Starts `index.js` of `app` with this signing secret and further environment, and waits
    /// (at most 20 s) until it listens
    pub fn start(app: &Path, node_modules: &Path, secret: &str, env: &[(&str, &str)]) -> NodeApp {
        let mut child = Command::new("node")
            .arg(app.join("index.js"))
            .env("NODE_PATH", node_modules)
            .env("WEBHOOK_SECRET", secret)
            .env("PORT", "0")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut node = NodeApp { child, port: 0 };
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the node app listens within 20 s");
        node.port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the node app: {line:?}"));
        node
    }

    /// `http://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for NodeApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
