//! Headless Chromium, for tests of the web UI: Debian's `chromium`,
//! installed with apt when missing (CI runs as root), run with a fresh
//! profile, no sandbox (root), no GPU and nothing downloaded.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::bounded;

pub struct Browser {
    executable: PathBuf,
    profile: tempfile::TempDir,
}

/// Where screenshots go for people to look at.
pub const SCREENSHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/ui-screenshots");

impl Browser {
    /// Chromium from the PATH, installed first if it is not there.
    pub fn find_or_install() -> Browser {
        let executable = which("chromium").unwrap_or_else(|| {
            let install = || {
                let mut apt = Command::new("apt-get");
                apt.args(["install", "-y", "-q", "--no-install-recommends", "chromium"])
                    .env("DEBIAN_FRONTEND", "noninteractive");
                bounded::run(&mut apt).status.success()
            };
            if !install() {
                bounded::run(Command::new("apt-get").args(["update", "-q"]));
                assert!(install(), "could not install chromium with apt-get");
            }
            which("chromium").expect("chromium installed")
        });
        Browser {
            executable,
            profile: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.executable);
        command.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--window-size=1300,1000",
        ]);
        command.arg(format!("--user-data-dir={}", self.profile.path().display()));
        command
    }

    /// The DOM of `url` once loaded, as the browser serializes it.
    pub fn dom(&self, url: &str) -> String {
        let output = bounded::run(self.command().args(["--dump-dom", url]));
        assert!(
            output.status.success(),
            "chromium --dump-dom {url}: {output:?}"
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// A PNG of `url` under [`SCREENSHOTS`].
    pub fn screenshot(&self, url: &str, name: &str) -> PathBuf {
        std::fs::create_dir_all(SCREENSHOTS).unwrap();
        let path = Path::new(SCREENSHOTS).join(format!("{name}.png"));
        let output = bounded::run(
            self.command()
                .arg(format!("--screenshot={}", path.display()))
                .arg(url),
        );
        assert!(
            output.status.success(),
            "chromium --screenshot {url}: {output:?}"
        );
        assert!(path.exists(), "no screenshot of {url}");
        path
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}
