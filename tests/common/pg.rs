//! Throwaway PostgreSQL servers built from the system binaries
//! (`/usr/lib/postgresql/<version>/bin`, or `pg_config --bindir`).
//!
//! The server listens on a unix socket only (`listen_addresses = ''`) in its
//! own temp dir, with trust auth, fsync off and `timezone = 'UTC'`.
//! Database URLs look like
//! `postgres://postgres@localhost:5432/DB?host=/tmp/cutover-pg-XXXX`
//! (sqlx, libpq and psql all accept this form).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{HarnessError, HarnessResult};

const INSTALL_HINT: &str = "run `apt-get install -y postgresql` (as root) to install the PostgreSQL server";

/// The socket file is `<dir>/.s.PGSQL.<PORT>`; nothing listens on TCP.
const PORT: u16 = 5432;

pub struct PgServer {
    bindir: PathBuf,
    /// Instance directory: holds `data/`, the socket and `postgres.log`.
    dir: PathBuf,
    /// OS user the server runs as (`Some("postgres")` when we are root).
    run_as: Option<String>,
    /// Private servers are stopped and deleted in `Drop`; the shared one is
    /// cleaned up by its watchdog.
    private: bool,
    /// How long `start` took.
    startup: Duration,
}

impl PgServer {
    /// The process-wide shared server, started on first use. Panics with the
    /// reason (e.g. how to install PostgreSQL) if it cannot be started.
    pub fn shared() -> &'static PgServer {
        match Self::try_shared() {
            Ok(server) => server,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`PgServer::shared`], but returns the error.
    pub fn try_shared() -> HarnessResult<&'static PgServer> {
        static SHARED: OnceLock<Result<PgServer, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::start(false).map_err(|e| e.0))
            .as_ref()
            .map_err(|e| HarnessError(e.clone()))
    }

    /// Starts a server owned by the caller; it is stopped and its directory
    /// deleted when the value is dropped. Use this for tests that stop,
    /// kill or restart the server.
    pub fn start_private() -> HarnessResult<PgServer> {
        Self::start(true)
    }

    fn start(private: bool) -> HarnessResult<PgServer> {
        let started = Instant::now();
        let bindir = find_bindir()?;
        let run_as = if super::is_root() {
            if super::os_user_ids("postgres").is_none() {
                return Err(format!(
                    "running as root but there is no `postgres` OS user to run the server as; {INSTALL_HINT}"
                )
                .into());
            }
            Some("postgres".to_owned())
        } else {
            None
        };
        let dir = super::new_instance_dir("cutover-pg-")?;
        let mut server = PgServer {
            bindir,
            dir,
            run_as,
            private: true,
            startup: Duration::ZERO,
        };
        // From here on, an early return drops `server`, which removes `dir`.
        if let Some(user) = &server.run_as {
            let (uid, gid) = super::os_user_ids(user).expect("checked above");
            std::os::unix::fs::chown(&server.dir, Some(uid), Some(gid))
                .map_err(|e| format!("chown {} to {user}: {e}", server.dir.display()))?;
        }
        super::spawn_watchdog(
            &server.dir,
            r#"
P=$(head -n 1 "$DIR/data/postmaster.pid" 2>/dev/null)
if [ -n "$P" ] && [ "$(cat /proc/$P/comm 2>/dev/null)" = postgres ]; then
    kill -QUIT "$P" 2>/dev/null
    i=0; while alive "$P" && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
    kill -KILL "$P" 2>/dev/null
fi
"#,
        )?;
        server.init_data_dir(private)?;
        server.pg_ctl_start()?;
        server.private = private;
        server.startup = started.elapsed();
        Ok(server)
    }

    /// initdb (or a copy of the cached template) plus our settings.
    fn init_data_dir(&self, private: bool) -> HarnessResult<()> {
        let data = self.data_dir();
        let init_args: Vec<String> = [
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            // 1 MB WAL segments instead of 16: a smaller data dir to copy.
            "--wal-segsize=1",
        ]
        .map(String::from)
        .to_vec();
        let version = super::run_cmd(
            Command::new(self.bindir.join("postgres")).arg("--version"),
            None,
            "postgres --version",
        )?;
        let key = super::template_key("pg", &version, &init_args);
        if super::restore_template(&key, &data) {
            if let Some(user) = &self.run_as {
                // In case the cache came from a machine with another uid.
                super::run_cmd(
                    Command::new("chown").arg("-R").arg(format!("{user}:")).arg(&data),
                    None,
                    "chown data dir",
                )?;
            }
        } else {
            let mut cmd = self.command("initdb");
            cmd.arg("-D").arg(&data).args(&init_args);
            super::run_cmd(&mut cmd, None, "initdb")?;
            super::save_template(&key, &data);
        }
        let conf = format!(
            "\n# cutover test harness\n\
             listen_addresses = ''\n\
             port = {PORT}\n\
             unix_socket_directories = '{}'\n\
             fsync = off\n\
             synchronous_commit = {}\n\
             full_page_writes = off\n\
             dynamic_shared_memory_type = mmap\n\
             shared_buffers = 64MB\n\
             max_connections = 200\n\
             timezone = 'UTC'\n\
             log_timezone = 'UTC'\n",
            self.dir.display(),
            // With fsync off a synchronous commit costs one write(), and it
            // keeps committed data across `stop()` (immediate shutdown) of a
            // private server. The shared server is never stopped early.
            if private { "on" } else { "off" },
        );
        let conf_path = data.join("postgresql.conf");
        let mut text =
            std::fs::read_to_string(&conf_path).map_err(|e| format!("reading {}: {e}", conf_path.display()))?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text).map_err(|e| format!("writing {}: {e}", conf_path.display()))?;
        Ok(())
    }

    fn pg_ctl_start(&self) -> HarnessResult<()> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60", "start"]);
        super::run_cmd(&mut cmd, None, "pg_ctl start").map_err(|e| {
            HarnessError(format!(
                "{e}\n--- {} ---\n{}",
                self.log_path().display(),
                super::log_tail(&self.log_path(), 30)
            ))
        })?;
        Ok(())
    }

    /// A command for one of the server binaries, run as the server's OS user.
    fn command(&self, program: &str) -> Command {
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(self.bindir.join(program));
                c
            }
            None => Command::new(self.bindir.join(program)),
        };
        cmd.current_dir(&self.dir);
        cmd
    }

    /// Creates a new, empty database named after `name_hint` (made unique)
    /// and returns its URL. Panics on failure.
    pub fn fresh_db(&self, name_hint: &str) -> String {
        self.try_fresh_db(name_hint).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_fresh_db(&self, name_hint: &str) -> HarnessResult<String> {
        let name = super::unique_db_name(name_hint);
        self.try_psql("postgres", &format!("CREATE DATABASE \"{name}\";"))?;
        Ok(self.url(&name))
    }

    /// URL of database `db` on this server (the database need not exist).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@localhost:{PORT}/{db}?host={}", self.dir.display())
    }

    /// Runs `sql` (one or more `;`-separated statements, stopping at the
    /// first error) with psql against a database URL or a database name on
    /// this server. Returns the rows, unaligned: columns separated by `|`,
    /// one row per line, no header, trailing newline trimmed. Panics on
    /// error.
    pub fn psql(&self, db_url_or_name: &str, sql: &str) -> String {
        self.try_psql(db_url_or_name, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_psql(&self, db_url_or_name: &str, sql: &str) -> HarnessResult<String> {
        let target = if db_url_or_name.contains("://") {
            db_url_or_name.to_owned()
        } else {
            self.url(db_url_or_name)
        };
        let mut cmd = Command::new(self.bindir.join("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-", "-d"])
            .arg(&target)
            .env("PGCONNECT_TIMEOUT", "10");
        let out = super::run_cmd(&mut cmd, Some(sql), &format!("psql on {target}"))?;
        Ok(out.trim_end_matches('\n').to_owned())
    }

    /// Directory holding the unix socket (the `host=` of the URLs).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the unix socket file.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join(format!(".s.PGSQL.{PORT}"))
    }

    pub fn port(&self) -> u16 {
        PORT
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The instance directory (data dir, socket, log); removed on stop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// The server log so far (handy in assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// How long starting this server took (initdb or template copy + start).
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// PID of the postmaster, if it is running.
    pub fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        let pid: u32 = text.lines().next()?.trim().parse().ok()?;
        super::pid_alive(pid).then_some(pid)
    }

    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// Stops the server at once, like a crash (`pg_ctl stop -m immediate`);
    /// the data stays and [`PgServer::restart`] brings it back. Only for
    /// private servers (the shared one is only reachable through `&`).
    pub fn stop(&mut self) -> HarnessResult<()> {
        let Some(pid) = self.pid() else { return Ok(()) };
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
        let result = super::run_cmd(&mut cmd, None, "pg_ctl stop").map(|_| ());
        if !super::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            !super::pid_alive(pid)
        }) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            super::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
                !super::pid_alive(pid)
            });
        }
        result
    }

    /// Starts a stopped server again on the same data and socket.
    pub fn restart(&mut self) -> HarnessResult<()> {
        if self.is_running() {
            self.stop()?;
        }
        self.pg_ctl_start()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if !self.private {
            return;
        }
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The highest-version `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`,
/// else the directory of `initdb` on `$PATH`.
fn find_bindir() -> HarnessResult<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres", "psql"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name.split('.').map(|p| p.parse().ok()).collect::<Option<Vec<u32>>>()?;
            let bin = entry.path().join("bin");
            complete(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if complete(&bin) {
            return Ok(bin);
        }
    }
    if let Some(initdb) = super::find_program(&["initdb"], &[])
        && let Some(bin) = initdb.parent()
        && complete(bin)
    {
        return Ok(bin.to_owned());
    }
    Err(format!(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres, psql) not found in \
         /usr/lib/postgresql/*/bin, `pg_config --bindir` or $PATH; {INSTALL_HINT}"
    )
    .into())
}
