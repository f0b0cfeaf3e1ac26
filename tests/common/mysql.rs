//! Throwaway MariaDB servers built from the system binaries (`mariadbd` /
//! `mysqld` and `mariadb-install-db`).
//!
//! The server runs with `--skip-networking` (unix socket only) in its own
//! temp dir; `root` has an empty password (`mysql_native_password`). It uses
//! `utf8mb4` and `time_zone = '+00:00'`. Database URLs look like
//! `mysql://root@localhost/DB?socket=/tmp/cutover-mariadb-XXXX/mysqld.sock`
//! (sqlx's `socket` parameter).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{HarnessError, HarnessResult};

const INSTALL_HINT: &str = "run `apt-get install -y mariadb-server` (as root) to install the MariaDB server";

const SBIN_DIRS: &[&str] = &[
    "/usr/sbin",
    "/usr/local/sbin",
    "/usr/bin",
    "/usr/local/bin",
    "/usr/local/mysql/bin",
];

pub struct MariaDbServer {
    server_bin: PathBuf,
    client_bin: PathBuf,
    /// Instance directory: holds `data/`, the socket, pid file and log.
    dir: PathBuf,
    /// The running `mariadbd` (our child, in its own process group).
    child: Option<Child>,
    /// Private servers are stopped and deleted in `Drop`; the shared one is
    /// cleaned up by its watchdog.
    private: bool,
    startup: Duration,
}

impl MariaDbServer {
    /// The process-wide shared server, started on first use. Panics with the
    /// reason (e.g. how to install MariaDB) if it cannot be started.
    pub fn shared() -> &'static MariaDbServer {
        match Self::try_shared() {
            Ok(server) => server,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`MariaDbServer::shared`], but returns the error.
    pub fn try_shared() -> HarnessResult<&'static MariaDbServer> {
        static SHARED: OnceLock<Result<MariaDbServer, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::start(false).map_err(|e| e.0))
            .as_ref()
            .map_err(|e| HarnessError(e.clone()))
    }

    /// Starts a server owned by the caller; it is killed and its directory
    /// deleted when the value is dropped. Use this for tests that stop,
    /// kill or restart the server.
    pub fn start_private() -> HarnessResult<MariaDbServer> {
        Self::start(true)
    }

    fn start(private: bool) -> HarnessResult<MariaDbServer> {
        let started = Instant::now();
        let missing = |what: &str| {
            HarnessError(format!(
                "MariaDB {what} not found in $PATH or {SBIN_DIRS:?}; {INSTALL_HINT}"
            ))
        };
        let server_bin = super::find_program(&["mariadbd", "mysqld"], SBIN_DIRS)
            .ok_or_else(|| missing("server (mariadbd/mysqld)"))?;
        let install_bin = super::find_program(&["mariadb-install-db", "mysql_install_db"], SBIN_DIRS)
            .ok_or_else(|| missing("mariadb-install-db"))?;
        let client_bin =
            super::find_program(&["mariadb", "mysql"], SBIN_DIRS).ok_or_else(|| missing("client (mariadb/mysql)"))?;

        let dir = super::new_instance_dir("cutover-mariadb-")?;
        let mut server = MariaDbServer {
            server_bin,
            client_bin,
            dir,
            child: None,
            private: true,
            startup: Duration::ZERO,
        };
        // From here on, an early return drops `server`, which removes `dir`.
        super::spawn_watchdog(
            &server.dir,
            r#"
P=$(cat "$DIR/mysqld.pid" 2>/dev/null)
case "$(cat /proc/$P/comm 2>/dev/null)" in
    mariadbd|mysqld) kill -KILL "$P" 2>/dev/null ;;
esac
"#,
        )?;

        let data = server.data_dir();
        let version = super::run_cmd(
            Command::new(&server.server_bin).arg("--version"),
            None,
            "mariadbd --version",
        )?;
        let key = super::template_key("mariadb", &version, &engine_options());
        if !super::restore_template(&key, &data) {
            let mut cmd = Command::new(&install_bin);
            cmd.arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .args([
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--skip-name-resolve",
                ])
                .args(user_option())
                .args(engine_options())
                // Temporary tables in the instance's own folder: two bootstraps sharing /tmp
                // can collide on their temporary file names (seen in a fresh CI run).
                .arg(format!("--tmpdir={}", server.dir.display()))
                .current_dir(&server.dir);
            super::run_cmd(&mut cmd, None, "mariadb-install-db")?;
            super::save_template(&key, &data);
        }
        server.spawn_and_wait()?;
        server.private = private;
        server.startup = started.elapsed();
        Ok(server)
    }

    fn spawn_and_wait(&mut self) -> HarnessResult<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(&self.server_bin)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.data_dir().display()))
            .arg(format!("--socket={}", self.socket_path().display()))
            .arg(format!("--pid-file={}", self.dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", self.log_path().display()))
            .args([
                "--skip-networking",
                "--skip-name-resolve",
                "--skip-ssl",
                "--default-time-zone=+00:00",
                "--max-connections=200",
            ])
            .args(user_option())
            .args(engine_options())
            .arg(format!("--tmpdir={}", self.dir.display()))
            .current_dir(&self.dir)
            // Own process group: a Ctrl-C to the test does not hit the
            // server; the watchdog stops it instead.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.server_bin.display()))?;
        let pid = child.id();
        self.child = Some(child);
        let socket = self.socket_path();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if !super::pid_alive(pid) {
                return Err(self.startup_error("mariadbd exited during startup"));
            }
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.startup_error("mariadbd did not accept connections within 60s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn startup_error(&self, what: &str) -> HarnessError {
        HarnessError(format!(
            "{what}\n--- {} ---\n{}",
            self.log_path().display(),
            super::log_tail(&self.log_path(), 30)
        ))
    }

    /// Creates a new, empty database named after `name_hint` (made unique)
    /// and returns its URL. Panics on failure.
    pub fn fresh_db(&self, name_hint: &str) -> String {
        self.try_fresh_db(name_hint).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_fresh_db(&self, name_hint: &str) -> HarnessResult<String> {
        let name = super::unique_db_name(name_hint);
        self.run_client(&self.socket_path(), None, &format!("CREATE DATABASE `{name}`;"))?;
        Ok(self.url(&name))
    }

    /// URL of database `db` on this server (the database need not exist).
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@localhost/{db}?socket={}", self.socket_path().display())
    }

    /// Runs `sql` (one or more `;`-separated statements, stopping at the
    /// first error) with the `mariadb` client against a database URL or a
    /// database name on this server. Returns the rows in batch form: columns
    /// separated by tabs, one row per line, no header, `NULL` for nulls,
    /// trailing newline trimmed. Panics on error.
    pub fn mysql(&self, db_url_or_name: &str, sql: &str) -> String {
        self.try_mysql(db_url_or_name, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_mysql(&self, db_url_or_name: &str, sql: &str) -> HarnessResult<String> {
        let (socket, db) = if db_url_or_name.contains("://") {
            let socket = db_url_or_name
                .split_once('?')
                .and_then(|(_, query)| query.split('&').find_map(|kv| kv.strip_prefix("socket=")))
                .map(PathBuf::from)
                .unwrap_or_else(|| self.socket_path());
            (socket, super::db_name_from_url(db_url_or_name))
        } else {
            (self.socket_path(), Some(db_url_or_name.to_owned()))
        };
        self.run_client(&socket, db.as_deref(), sql)
    }

    fn run_client(&self, socket: &Path, db: Option<&str>, sql: &str) -> HarnessResult<String> {
        let mut cmd = Command::new(&self.client_bin);
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", socket.display()))
            .args(["--user=root", "--batch", "--skip-column-names", "--connect-timeout=10"]);
        if let Some(db) = db {
            cmd.arg(format!("--database={db}"));
        }
        let out = super::run_cmd(
            &mut cmd,
            Some(sql),
            &format!("mariadb client on {} db {db:?}", socket.display()),
        )?;
        Ok(out.trim_end_matches('\n').to_owned())
    }

    /// Path of the unix socket (the `socket=` of the URLs).
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The instance directory (data dir, socket, log); removed on stop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("mariadbd.log")
    }

    /// The server log so far (handy in assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// How long starting this server took (install-db or template copy + start).
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// PID of `mariadbd`, if it is running.
    pub fn pid(&self) -> Option<u32> {
        let pid = self.child.as_ref()?.id();
        super::pid_alive(pid).then_some(pid)
    }

    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// Kills the server at once (SIGKILL, like a crash); the data stays and
    /// [`MariaDbServer::restart`] brings it back (InnoDB recovers). Only for
    /// private servers (the shared one is only reachable through `&`).
    pub fn stop(&mut self) -> HarnessResult<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().map_err(|e| format!("waiting for mariadbd: {e}"))?;
        }
        // Stale pid/socket files would confuse the watchdog and readiness checks.
        let _ = std::fs::remove_file(self.dir.join("mysqld.pid"));
        let _ = std::fs::remove_file(self.socket_path());
        Ok(())
    }

    /// Starts a stopped server again on the same data and socket.
    pub fn restart(&mut self) -> HarnessResult<()> {
        self.stop()?;
        self.spawn_and_wait()
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        if !self.private {
            return;
        }
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `--user=root` is required to run mariadbd as root.
fn user_option() -> Option<&'static str> {
    super::is_root().then_some("--user=root")
}

/// Options used both for the bootstrap and for the server: small and fast,
/// no fsync (the data is thrown away, and a killed server still recovers
/// every committed transaction from the OS page cache).
fn engine_options() -> Vec<String> {
    [
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci",
        "--innodb-buffer-pool-size=64M",
        "--innodb-log-file-size=8M",
        // 2: the redo log is written (not synced) at each commit, so
        // committed data survives a SIGKILL of the server.
        "--innodb-flush-log-at-trx-commit=2",
        "--innodb-doublewrite=0",
        "--innodb-flush-method=nosync",
        "--innodb-use-native-aio=0",
    ]
    .map(String::from)
    .to_vec()
}
