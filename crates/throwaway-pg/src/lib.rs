//! A throwaway PostgreSQL for tests: `initdb` into a fresh temporary
//! folder (as the unprivileged `postgres` user when run as root), a server
//! listening only on a unix socket in that folder, and a fresh database per
//! caller. Nothing is installed here: the server binaries come from the
//! `postgresql` package (`QUOTA_PG_BIN` names their folder, else `PATH`,
//! else the newest `/usr/lib/postgresql/*/bin`). A test that needs
//! PostgreSQL fails, loudly, when they are missing.
//!
//! [`shared`] starts one cluster per test process on first use; a watchdog
//! stops it and deletes its folder when the process ends, however it ends.
//! [`Cluster::start`] gives a test a cluster of its own (to restart it),
//! stopped when dropped.
//!
//! ```no_run
//! let url = quota_throwaway_pg::shared().fresh_database();
//! assert!(url.starts_with("postgres://"));
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A running throwaway cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    /// Run the server's tools as this user (when the tests run as root).
    run_as: Option<String>,
    databases: AtomicU32,
    owned: bool,
}

/// The user every cluster is initialized for.
pub const USER: &str = "quota";

/// The cluster of this test process, started on first use.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        let mut cluster = start_cluster();
        cluster.owned = false;
        cluster.watch_process();
        cluster
    })
}

fn start_cluster() -> Cluster {
    match Cluster::try_start() {
        Ok(cluster) => cluster,
        // The tests that asked for PostgreSQL cannot run: they fail, saying why.
        #[allow(clippy::panic, reason = "a test helper fails the test")]
        Err(e) => panic!("cannot start a throwaway PostgreSQL: {e}"),
    }
}

impl Cluster {
    /// A cluster of the caller's own, stopped and deleted when dropped.
    pub fn start() -> Cluster {
        start_cluster()
    }

    fn try_start() -> Result<Cluster, String> {
        let bin = server_bin()?;
        let run_as = is_root().then(|| "postgres".to_owned());
        let mut random = [0u8; 4];
        getrandom::fill(&mut random).map_err(|e| e.to_string())?;
        // Short: a socket path must fit in about 100 bytes.
        let dir = std::env::temp_dir().join(format!("qpg-{}", hex::encode(random)));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let cluster = Cluster {
            dir,
            bin,
            run_as,
            databases: AtomicU32::new(0),
            owned: true,
        };
        if let Some(user) = &cluster.run_as {
            let status = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(&cluster.dir)
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !status.success() {
                return Err(format!("cannot give {} to {user}", cluster.dir.display()));
            }
        }
        cluster.tool(
            "initdb",
            &[
                "-D",
                &cluster.data().to_string_lossy(),
                "-A",
                "trust",
                "-U",
                USER,
                "--no-sync",
                "--no-instructions",
            ],
        )?;
        cluster.start_server()?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The folder of the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    fn tool(&self, name: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(name);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let output = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        if !output.status.success() {
            return Err(format!(
                "{name} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(())
    }

    fn start_server(&self) -> Result<(), String> {
        let options = format!(
            "-k {} -c listen_addresses='' -c fsync=off -c synchronous_commit=on -c max_connections=200",
            self.dir.display()
        );
        self.tool(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-o",
                &options,
                "-l",
                &self.dir.join("server.log").to_string_lossy(),
                "-w",
                "start",
            ],
        )
    }

    /// Stops the server (`fast`: sessions are ended, as at a restart of
    /// the database).
    pub fn stop(&self) {
        let _ = self.tool(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    /// Starts the server again after [`Cluster::stop`].
    pub fn restart(&self) {
        if let Err(e) = self.start_server() {
            eprintln!("cannot start the throwaway PostgreSQL again: {e}");
        }
    }

    /// The URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        let socket = self.dir.to_string_lossy().replace('/', "%2F");
        format!("postgres://{USER}@{socket}/{database}")
    }

    /// A new, empty database; its URL.
    pub fn fresh_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("test_{n}");
        let socket = self.dir.to_string_lossy().into_owned();
        if let Err(e) = self.tool(
            "createdb",
            &["-h", &socket, "-U", USER, "-T", "template0", &name],
        ) {
            #[allow(clippy::panic, reason = "a test helper fails the test")]
            {
                panic!("cannot create a database: {e}");
            }
        }
        self.url(&name)
    }

    /// A watchdog that stops the server and deletes its folder once this
    /// process has ended.
    fn watch_process(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             kill -QUIT $(head -1 '{data}/postmaster.pid') 2>/dev/null; \
             for _ in $(seq 50); do [ -e '{data}/postmaster.pid' ] || break; sleep 0.1; done; \
             rm -rf '{dir}'",
            pid = std::process::id(),
            data = self.data().display(),
            dir = self.dir.display(),
        );
        let spawned = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            eprintln!("cannot watch the throwaway PostgreSQL: {e}");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.owned {
            let _ = self.tool(
                "pg_ctl",
                &[
                    "-D",
                    &self.data().to_string_lossy(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The folder of `initdb` and `pg_ctl`.
fn server_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("QUOTA_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            // Followed to the package's own folder, which has the rest.
            if let Ok(initdb) = dir.join("initdb").canonicalize()
                && let Some(bin) = initdb.parent()
                && bin.join("pg_ctl").is_file()
                && bin.join("createdb").is_file()
            {
                return Ok(bin.to_path_buf());
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "no PostgreSQL server binaries (initdb, pg_ctl): install the `postgresql` package \
         (`make pg-tools` does), or name their folder in QUOTA_PG_BIN"
            .to_owned()
    })
}
